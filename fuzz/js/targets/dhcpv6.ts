/** Fuzz target: the DHCPv6 parser (`wire/dhcpv6.ts`), input a DHCPv6 message (UDP payload). */
import { emitDhcpv6, parseDhcpv6 } from "../../../wire/mod.ts";
import { checkRoundTrip, copyInput } from "./common.ts";

/** Entry point called by Jazzer.js with one input. */
export function fuzz(data: Uint8Array): void {
  checkRoundTrip("dhcpv6", copyInput(data), parseDhcpv6, emitDhcpv6);
}
