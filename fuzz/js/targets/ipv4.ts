/** Fuzz target: the IPv4 parser (`wire/ipv4.ts`), input an IPv4 packet whose header checksum
 * is fixed up first so mutations reach the fields behind it. */
import { emitIpv4Packet, parseIpv4Packet } from "../../../wire/mod.ts";
import { checkRoundTrip, copyInput, fixIpv4Header } from "./common.ts";

/** Entry point called by Jazzer.js with one input. */
export function fuzz(data: Uint8Array): void {
  const packet = copyInput(data);
  fixIpv4Header(packet);
  checkRoundTrip("ipv4", packet, parseIpv4Packet, emitIpv4Packet);
}
