/**
 * Per-reason counters of frames the gateway services did not answer. The caller owns one per
 * vNIC and reads it for metrics; bumping is one property increment and never throws.
 * @module
 */

/** Every reason a guest frame can be dropped, named after what was wrong with it. */
export const DROP_REASONS = [
  "eth_malformed",
  "eth_src_not_vnic",
  "ethertype_unsupported",
  "arp_malformed",
  "arp_not_request",
  "arp_target_not_gateway",
  "ipv4_malformed",
  "ipv4_fragment_to_gateway",
  "ipv4_to_gateway_unhandled",
  "ipv4_broadcast_unhandled",
  "icmpv4_malformed",
  "icmpv4_not_echo_request",
  "icmp_echo_bad_source",
  "udp_malformed",
  "dhcpv4_malformed",
  "dhcpv4_bad_chaddr",
  "dhcpv4_not_request",
  "dhcpv4_no_message_type",
  "dhcpv4_relayed",
  "dhcpv4_other_server",
  "dhcpv4_request_without_address",
  "dhcpv4_unexpected_type",
  "ipv6_malformed",
  "ipv6_link_local_not_gateway",
  "ipv6_multicast_unhandled",
  "ipv6_to_gateway_unhandled",
  "icmpv6_malformed",
  "ndp_bad_hop_limit",
  "ndp_invalid",
  "ndp_target_not_served",
  "ndp_unhandled_type",
  "dhcpv6_malformed",
  "dhcpv6_bad_source",
  "dhcpv6_missing_client_id",
  "dhcpv6_wrong_server_id",
  "dhcpv6_unexpected_server_id",
  "dhcpv6_unexpected_ia",
  "dhcpv6_unexpected_type",
  "dhcpv6_confirm_without_addresses",
  "reply_too_large",
  "handler_fault",
] as const;

/** Why a frame was dropped. */
export type DropReason = typeof DROP_REASONS[number];

/**
 * Counters by drop reason, all present from the start at 0.
 *
 * @example
 * ```ts
 * const counters = new DropCounters();
 * handleGuestFrame(ctx, frame, counters);
 * console.log(counters.counts.dhcpv4_bad_chaddr);
 * ```
 */
export class DropCounters {
  /** Count per reason. */
  readonly counts: Record<DropReason, number>;

  /** All counters at 0. */
  constructor() {
    this.counts = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<
      DropReason,
      number
    >;
  }

  /** Adds one to `reason`. */
  bump(reason: DropReason): void {
    this.counts[reason]++;
  }

  /** Sum over all reasons. */
  total(): number {
    let n = 0;
    for (const r of DROP_REASONS) n += this.counts[r];
    return n;
  }
}
