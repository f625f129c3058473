/** Shared by the end-to-end tests. */
import type { Guest } from "../helpers/guest.ts";

/** Runs `cmd` in the guest and returns its output; fails with the output on a non-zero exit. */
export async function ok(g: Guest, cmd: string, timeoutMs = 30_000): Promise<string> {
  const r = await g.run(cmd, { timeoutMs });
  if (r.code !== 0) throw new Error(`${g.name}: \`${cmd}\` exited ${r.code}:\n${r.output}`);
  return r.output;
}
