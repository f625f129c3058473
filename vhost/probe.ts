/**
 * Whether a vhost-user socket serves: the probe a VMM's first request makes. Used by the
 * benchmarks ("until the vNIC serves") and the tests.
 * @module
 */

import { decodeHeader, encodeMessage, HEADER_SIZE, Request } from "./protocol.ts";

/**
 * Connects to a vNIC's socket as a VMM does and waits for the answer to GET_FEATURES: true
 * once the vNIC serves, false if the socket refused or no answer came within `timeoutMs`.
 */
export async function vhostAnswers(path: string, timeoutMs: number): Promise<boolean> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch {
    return false;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await conn.write(encodeMessage(Request.GET_FEATURES, 0, new Uint8Array(0)));
    const buf = new Uint8Array(HEADER_SIZE + 8);
    const answer = (async () => {
      let got = 0;
      while (got < HEADER_SIZE) {
        const n = await conn.read(buf.subarray(got));
        if (n === null) return false;
        got += n;
      }
      return decodeHeader(buf).request === Request.GET_FEATURES;
    })().catch(() => false);
    const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
    return await Promise.race([answer, late]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    conn.close();
  }
}
