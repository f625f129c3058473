/**
 * Answers ARP requests for the gateway's IPv4 address; every other ARP is dropped, since
 * guests hold /32s and reach everything through the gateway.
 * @module
 */

import {
  ARP_OP_REPLY,
  ARP_OP_REQUEST,
  bytesEqual,
  emitArp,
  emitEthernet,
  ETHERTYPE_ARP,
  parseArp,
  WireError,
} from "../wire/mod.ts";
import { GATEWAY_IPV4, type Verdict, type VnicContext } from "./context.ts";
import { drop, reply } from "./verdict.ts";

/** Handles the ARP payload of a frame the guest sent. */
export function answerArp(ctx: VnicContext, payload: Uint8Array): Verdict {
  const arp = parseArp(payload);
  if (arp instanceof WireError) return drop("arp_malformed");
  if (arp.operation !== ARP_OP_REQUEST) return drop("arp_not_request");
  if (!bytesEqual(arp.targetIp, GATEWAY_IPV4)) return drop("arp_target_not_gateway");
  const answer = emitArp({
    operation: ARP_OP_REPLY,
    senderMac: ctx.gatewayMac,
    senderIp: GATEWAY_IPV4,
    targetMac: ctx.mac,
    targetIp: arp.senderIp,
  });
  return reply(
    emitEthernet({ dst: ctx.mac, src: ctx.gatewayMac, ethertype: ETHERTYPE_ARP, payload: answer }),
  );
}
