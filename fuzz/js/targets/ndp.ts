/**
 * Fuzz target: the ICMPv6 parser with its NDP messages and options (`wire/icmpv6.ts`), input
 * an ICMPv6 message. Its checksum is fixed up for a fixed link-local source and the
 * all-routers destination, so mutations reach the message and option parsers.
 */
import { emitIcmpv6, IP_PROTO_ICMPV6, parseIcmpv6, parseIpv6 } from "../../../wire/mod.ts";
import { checkRoundTrip, copyInput, fixL4 } from "./common.ts";

const SRC = parseIpv6("fe80::5054:ff:fe12:3456") as Uint8Array;
const DST = parseIpv6("ff02::2") as Uint8Array;

/** Entry point called by Jazzer.js with one input. */
export function fuzz(data: Uint8Array): void {
  const msg = copyInput(data);
  fixL4(msg, IP_PROTO_ICMPV6, SRC, DST);
  checkRoundTrip(
    "icmpv6",
    msg,
    (b) => parseIcmpv6(b, SRC, DST),
    (r) => emitIcmpv6(r, SRC, DST),
  );
}
