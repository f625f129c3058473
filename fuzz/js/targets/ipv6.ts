/** Fuzz target: the IPv6 parser (`wire/ipv6.ts`), input an IPv6 packet. */
import { emitIpv6Packet, parseIpv6Packet } from "../../../wire/mod.ts";
import { checkRoundTrip, copyInput } from "./common.ts";

/** Entry point called by Jazzer.js with one input. */
export function fuzz(data: Uint8Array): void {
  checkRoundTrip("ipv6", copyInput(data), parseIpv6Packet, emitIpv6Packet);
}
