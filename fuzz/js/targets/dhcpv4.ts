/** Fuzz target: the DHCPv4 parser (`wire/dhcpv4.ts`), input a DHCPv4 message (UDP payload). */
import { emitDhcpv4, parseDhcpv4 } from "../../../wire/mod.ts";
import { checkRoundTrip, copyInput } from "./common.ts";

/** Entry point called by Jazzer.js with one input. */
export function fuzz(data: Uint8Array): void {
  checkRoundTrip("dhcpv4", copyInput(data), parseDhcpv4, emitDhcpv4);
}
