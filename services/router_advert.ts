/**
 * Router advertisements (RFC 4861 section 6.2): the RA the gateway sends, in answer to a
 * router solicitation and periodically, and the pure scheduler of the periodic ones.
 * @module
 */

import {
  emitIcmpv6,
  IPV6_ALL_NODES,
  type Ipv6Addr,
  ipv6MulticastMac,
  type MacAddr,
  NDP_HOP_LIMIT,
  type WireError,
} from "../wire/mod.ts";
import { GATEWAY_IPV6, type VnicContext } from "./context.ts";
import { GATEWAY_TTL, icmpv6Frame } from "./frames.ts";

/** Router lifetime on public networks: the gateway is a default router for 30 minutes. */
export const PUBLIC_ROUTER_LIFETIME_SECS = 1800;
/** Router lifetime on private networks: 0, the gateway is not a default router. */
export const PRIVATE_ROUTER_LIFETIME_SECS = 0;
/** Valid lifetime of the advertised prefix (RFC 4861 AdvValidLifetime default, 30 days). */
export const PREFIX_VALID_LIFETIME_SECS = 2592000;
/** Preferred lifetime of the advertised prefix (RFC 4861 default, 7 days). */
export const PREFIX_PREFERRED_LIFETIME_SECS = 604800;

/**
 * The RA frame for `ctx`, to `dst` at `dstMac`: M=1 and O=1 (addresses and other
 * configuration by DHCPv6), the prefix on-link (L=1) but not for SLAAC (A=0), the MTU, and
 * the gateway MAC as source link-layer address.
 */
export function buildRouterAdvert(
  ctx: VnicContext,
  dst: Ipv6Addr,
  dstMac: MacAddr,
): Uint8Array | WireError {
  const icmp = emitIcmpv6(
    {
      kind: "router_advert",
      curHopLimit: GATEWAY_TTL,
      managed: true,
      other: true,
      routerLifetime: ctx.isPublic ? PUBLIC_ROUTER_LIFETIME_SECS : PRIVATE_ROUTER_LIFETIME_SECS,
      reachableTime: 0,
      retransTimer: 0,
      options: {
        sourceLinkAddr: ctx.gatewayMac,
        mtu: ctx.mtu,
        prefixes: [{
          prefixLen: ctx.ipv6Prefix.prefixLen,
          onLink: true,
          autonomous: false,
          validLifetime: PREFIX_VALID_LIFETIME_SECS,
          preferredLifetime: PREFIX_PREFERRED_LIFETIME_SECS,
          prefix: ctx.ipv6Prefix.addr,
        }],
      },
    },
    GATEWAY_IPV6,
    dst,
  );
  return icmpv6Frame(ctx.gatewayMac, dstMac, GATEWAY_IPV6, dst, NDP_HOP_LIMIT, icmp);
}

/** The periodic, unsolicited RA: to all nodes (ff02::1, 33:33:00:00:00:01). */
export function buildPeriodicRa(ctx: VnicContext): Uint8Array | WireError {
  return buildRouterAdvert(ctx, IPV6_ALL_NODES, ipv6MulticastMac(IPV6_ALL_NODES));
}

/** RA timing (RFC 4861 section 6.2.1 and 10), all in seconds. */
export interface RaIntervals {
  /** MaxRtrAdvInterval, 4..1800. */
  readonly maxInterval: number;
  /** MinRtrAdvInterval, 3..0.75 * maxInterval. */
  readonly minInterval: number;
  /** MAX_INITIAL_RTR_ADVERTISEMENTS: how many first RAs use the short interval. */
  readonly initialCount: number;
  /** MAX_INITIAL_RTR_ADVERT_INTERVAL: the cap on the interval of the first RAs. */
  readonly initialInterval: number;
}

/** RFC 4861 defaults: 600 s max, 0.33 * max min, 3 initial RAs at most 16 s apart. */
export const DEFAULT_RA_INTERVALS: RaIntervals = {
  maxInterval: 600,
  minInterval: 198,
  initialCount: 3,
  initialInterval: 16,
};

const MAX_RTR_ADV_INTERVAL_MIN = 4;
const MAX_RTR_ADV_INTERVAL_MAX = 1800;
const MIN_RTR_ADV_INTERVAL_MIN = 3;
const MIN_TO_MAX_RATIO = 0.75;
const MS_PER_SEC = 1000;

/**
 * When to send the next periodic RA, in milliseconds on the caller's clock.
 *
 * The delay is uniform in [minInterval, maxInterval] (RFC 4861 section 6.2.4), capped at
 * `initialInterval` while fewer than `initialCount` RAs have been sent so a new guest learns
 * its router quickly. Intervals out of RFC range are clamped into it.
 *
 * @param nowMs the current time
 * @param sentSoFar periodic RAs already sent on this link
 * @param random a number in [0, 1), supplied by the caller so this function stays pure
 *
 * @example
 * ```ts
 * let sent = 0;
 * let next = nextRaTime(Date.now(), sent, DEFAULT_RA_INTERVALS, Math.random());
 * ```
 */
export function nextRaTime(
  nowMs: number,
  sentSoFar: number,
  intervals: RaIntervals,
  random: number,
): number {
  const max = Math.min(
    MAX_RTR_ADV_INTERVAL_MAX,
    Math.max(MAX_RTR_ADV_INTERVAL_MIN, intervals.maxInterval),
  );
  const min = Math.min(
    MIN_TO_MAX_RATIO * max,
    Math.max(MIN_RTR_ADV_INTERVAL_MIN, intervals.minInterval),
  );
  const r = Number.isFinite(random) ? Math.min(Math.max(random, 0), 1) : 0;
  let delay = min + (max - min) * r;
  if (sentSoFar < intervals.initialCount) delay = Math.min(delay, intervals.initialInterval);
  return nowMs + delay * MS_PER_SEC;
}
