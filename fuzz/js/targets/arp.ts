/** Fuzz target: the ARP parser (`wire/arp.ts`), input an ARP packet (Ethernet payload). */
import { emitArp, parseArp } from "../../../wire/mod.ts";
import { checkRoundTrip, copyInput } from "./common.ts";

/** Entry point called by Jazzer.js with one input. */
export function fuzz(data: Uint8Array): void {
  checkRoundTrip("arp", copyInput(data), parseArp, emitArp);
}
