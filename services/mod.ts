/**
 * The gateway's guest services, pure "request in, reply out": ARP, NDP and router
 * advertisements, ping, DHCPv4 and DHCPv6 for one vNIC. No I/O and no state: the caller
 * passes the vNIC's {@link VnicContext} with every frame and owns the {@link DropCounters}.
 *
 * @example
 * ```ts
 * import { DropCounters, handleGuestFrame } from "./services/mod.ts";
 * const counters = new DropCounters();
 * const verdict = handleGuestFrame(ctx, frame, counters);
 * ```
 * @module
 */

export {
  DEFAULT_DHCPV4_LEASE_SECS,
  DEFAULT_DHCPV6_PREFERRED_SECS,
  DEFAULT_DHCPV6_VALID_SECS,
  GATEWAY_IPV4,
  GATEWAY_IPV6,
  type Verdict,
  type VnicContext,
} from "./context.ts";
export { DROP_REASONS, DropCounters, type DropReason } from "./counters.ts";
export { handleGuestFrame } from "./gateway.ts";
export {
  buildPeriodicRa,
  DEFAULT_RA_INTERVALS,
  nextRaTime,
  PREFIX_PREFERRED_LIFETIME_SECS,
  PREFIX_VALID_LIFETIME_SECS,
  PRIVATE_ROUTER_LIFETIME_SECS,
  PUBLIC_ROUTER_LIFETIME_SECS,
  type RaIntervals,
} from "./router_advert.ts";
export {
  classlessRoutes,
  DHCPV4_SUBNET_MASK,
  DHCPV4_T1_FRACTION,
  DHCPV4_T2_FRACTION,
} from "./dhcpv4.ts";
export {
  DHCPV6_MAX_IAS_ANSWERED,
  DHCPV6_MAX_PREFERENCE,
  DHCPV6_MAX_STALE_ADDRESSES,
  DHCPV6_T1_FRACTION,
  DHCPV6_T2_FRACTION,
} from "./dhcpv6.ts";
