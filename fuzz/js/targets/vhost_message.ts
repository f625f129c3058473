/**
 * Fuzz target: the vhost-user message parser (`vhost/protocol.ts`). The first input byte is
 * the number of file descriptors that came with the message (0-8), the rest the message.
 * The parser may refuse with a ProtocolError; anything else it throws is a finding.
 */
import { decodeMessage, HEADER_SIZE, ProtocolError } from "../../../vhost/protocol.ts";
import { copyInput, expect } from "./common.ts";

/** The most fds one message can carry (VHOST_MEMORY_BASELINE_NREGIONS). */
const MAX_FDS = 8;

/** Entry point called by Jazzer.js with one input. */
export function fuzz(data: Uint8Array): void {
  if (data.length < 1 + HEADER_SIZE) return;
  const nfds = data[0] % (MAX_FDS + 1);
  const bytes = copyInput(data.subarray(1));
  try {
    const msg = decodeMessage(bytes, nfds);
    expect(
      msg.request === new DataView(bytes.buffer).getUint32(0, true),
      "request code kept",
    );
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e;
  }
}
