/**
 * The security-group filter of one vNIC: the rules of its attached groups plus a connection
 * table, consulted for every frame to or from the VM.
 *
 * - No group attached: {@link SecurityFilter.enabled} is false and the vNIC does not call the
 *   filter at all (every frame passes at no cost).
 * - At least one group: both directions are default-deny. A packet passes when it belongs to a
 *   tracked flow (either way: replies pass), when it is an ICMP error quoting a tracked flow
 *   (to the flow's sender), when it is link-local housekeeping between the guest and the
 *   gateway (ARP, neighbor discovery, DHCP), or when a rule of its direction allows it.
 * - TCP, UDP and ICMP echo are tracked: the first packet a rule allows creates a flow, and
 *   every later packet of it, both ways, passes without looking at the rules. Other protocols
 *   (and ICMP other than echo and its errors) are matched per packet.
 * - A rule change re-checks every tracked flow against the new rules by the flow's first
 *   packet and removes those no rule allows any more, so their next packet is dropped.
 *
 * Counters: `sg_rule_hit_<ruleId>` counts the packets a rule allowed, that is the first packet
 * of every tracked flow plus every packet of untracked protocols; packets of a flow that is
 * already tracked are counted as `sg_pass_established`.
 * @module
 */

import type { DesiredRule } from "../daemon/protocol.ts";
import { GATEWAY_IPV4, GATEWAY_IPV6 } from "../services/context.ts";
import { read32 } from "../wire/bytes.ts";
import { DHCPV4_CLIENT_PORT, DHCPV4_SERVER_PORT } from "../wire/dhcpv4.ts";
import { DHCPV6_CLIENT_PORT, DHCPV6_SERVER_PORT } from "../wire/dhcpv6.ts";
import {
  ICMPV6_NEIGHBOR_ADVERT,
  ICMPV6_ROUTER_ADVERT,
  ICMPV6_ROUTER_SOLICIT,
  NDP_HOP_LIMIT,
} from "../wire/icmpv6.ts";
import { IP_PROTO_TCP, IP_PROTO_UDP } from "../wire/ipv4.ts";
import { IP_PROTO_ICMPV6 } from "../wire/ipv6.ts";
import { Conntrack, NOT_FOUND } from "./conntrack.ts";
import {
  isEchoReply,
  isEchoRequest,
  PacketInfo,
  parseFrame,
  ParseResult,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
} from "./packet.ts";
import { type Direction, type RejectedRule, RuleSet } from "./rules.ts";

/** Why the filter let a packet through. */
export type PassReason =
  /** A rule allowed it (the first packet of a flow, or an untracked protocol). */
  | "rule"
  /** It belongs to a tracked flow. */
  | "established"
  /** An ICMP error about a tracked flow. */
  | "related"
  /** ARP, neighbor discovery or DHCP between the guest and the gateway. */
  | "link_local";

/** Why the filter dropped a packet. */
export type DropReason =
  /** No rule of the packet's direction allows it. */
  | "not_allowed"
  /** Headers cut short or contradicting their lengths. */
  | "malformed"
  /** Neither IPv4, IPv6 nor ARP. */
  | "unsupported_ethertype"
  /** A rule allowed a new flow but the connection table is full. */
  | "conntrack_full";

/** The decision on one frame; the objects are shared constants, compare by field. */
export type FilterVerdict =
  | { readonly pass: true; readonly via: PassReason }
  | { readonly pass: false; readonly reason: DropReason };

function passing(via: PassReason): FilterVerdict {
  return Object.freeze({ pass: true, via });
}

function dropping(reason: DropReason): FilterVerdict {
  return Object.freeze({ pass: false, reason });
}

const PASS_RULE = passing("rule");
const PASS_ESTABLISHED = passing("established");
const PASS_RELATED = passing("related");
const PASS_LINK_LOCAL = passing("link_local");
const DROP_NOT_ALLOWED = dropping("not_allowed");
const DROP_MALFORMED = dropping("malformed");
const DROP_ETHERTYPE = dropping("unsupported_ethertype");
const DROP_FULL = dropping("conntrack_full");

/** How long a flow lives without packets, by protocol and TCP state, in milliseconds. */
export interface Timeouts {
  /** A SYN was seen, nothing back yet. */
  tcpSynSent: number;
  /** The SYN was answered, the handshake's last ACK not seen yet. */
  tcpSynReceived: number;
  /** Handshake done (or a flow picked up mid-stream). */
  tcpEstablished: number;
  /** A FIN was seen. */
  tcpClosing: number;
  /** A RST was seen: late segments still pass for a moment. */
  tcpClosed: number;
  /** UDP, nothing back yet. */
  udpUnreplied: number;
  /** UDP with traffic both ways. */
  udpReplied: number;
  /** ICMP echo. */
  icmpEcho: number;
}

/** The defaults: the Linux kernel's, except a shorter established TCP (a table is per vNIC). */
export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = Object.freeze({
  tcpSynSent: 120_000,
  tcpSynReceived: 60_000,
  tcpEstablished: 86_400_000,
  tcpClosing: 120_000,
  tcpClosed: 10_000,
  udpUnreplied: 30_000,
  udpReplied: 120_000,
  icmpEcho: 30_000,
});

/** Flows a vNIC tracks at most by default. */
export const DEFAULT_MAX_FLOWS = 16_384;
/** Slots the sweeper looks at per new flow: expired flows leave without a timer. */
const SWEEP_PER_INSERT = 8;

/** TCP states of a flow. */
const TCP_SYN_SENT = 1;
const TCP_SYN_RECEIVED = 2;
const TCP_ESTABLISHED = 3;
const TCP_CLOSING = 4;
const TCP_CLOSED = 5;

/** Options of a {@link SecurityFilter}. */
export interface FilterOptions {
  /** The clock in milliseconds (default `performance.now`); tests inject one. */
  now?: () => number;
  /** Flows tracked at most (default {@link DEFAULT_MAX_FLOWS}). */
  maxFlows?: number;
  /** Overrides of {@link DEFAULT_TIMEOUTS}. */
  timeouts?: Partial<Timeouts>;
}

/** What {@link SecurityFilter.update} did. */
export interface UpdateResult {
  /** False when the groups and rules were the same as before: nothing was done. */
  changed: boolean;
  /** Tracked flows removed because no rule allows them any more. */
  revoked: number;
  /** Rules that could not be compiled and so allow nothing. */
  rejected: readonly RejectedRule[];
}

/** Counter slots of the packet path. */
const C_DROP_INGRESS = 0;
const C_DROP_EGRESS = 1;
const C_DROP_NOT_ALLOWED = 2;
const C_DROP_MALFORMED = 3;
const C_DROP_ETHERTYPE = 4;
const C_CONNTRACK_FULL = 5;
const C_PASS_ESTABLISHED = 6;
const C_PASS_RELATED = 7;
const C_PASS_LINK_LOCAL = 8;
const C_REVOKED = 9;
const COUNTERS = 10;

/** Counter names, by slot. */
const COUNTER_NAMES = [
  "sg_drop_ingress",
  "sg_drop_egress",
  "sg_drop_not_allowed",
  "sg_drop_malformed",
  "sg_drop_unsupported_ethertype",
  "sg_conntrack_full",
  "sg_pass_established",
  "sg_pass_related",
  "sg_pass_link_local",
  "sg_conntrack_revoked",
];

/** The flow key's first word. */
function metaOf(family: number, proto: number): number {
  return (family << 8) | proto;
}

/**
 * The filter of one vNIC. Feed it every frame with {@link SecurityFilter.filter} while
 * {@link SecurityFilter.enabled}; push rule changes with {@link SecurityFilter.update}.
 *
 * @example
 * ```ts
 * const sg = new SecurityFilter();
 * sg.update(nic.securityGroupIds, nic.rules);
 * if (sg.enabled && !sg.filter(frame, "egress").pass) continue; // dropped and counted
 * ```
 */
export class SecurityFilter {
  readonly #now: () => number;
  readonly #timeouts: Timeouts;
  readonly #ct: Conntrack;
  readonly #info = new PacketInfo();
  readonly #inner = new PacketInfo();
  readonly #counts = new Float64Array(COUNTERS);
  #rules = new RuleSet([]);
  #hits = new Float64Array(0);
  #enabled = false;
  /** The input of the last update; a new filter is one updated with no groups. */
  #signature = JSON.stringify([[], []]);

  constructor(opts: FilterOptions = {}) {
    this.#now = opts.now ?? (() => performance.now());
    this.#timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    this.#ct = new Conntrack(opts.maxFlows ?? DEFAULT_MAX_FLOWS);
  }

  /** The filter's clock, for callers that pass `now` to {@link SecurityFilter.filter}. */
  now(): number {
    return this.#now();
  }

  /** True while at least one security group is attached. */
  get enabled(): boolean {
    return this.#enabled;
  }

  /** Flows in the connection table. */
  get flows(): number {
    return this.#ct.size;
  }

  /**
   * Applies the vNIC's attached groups and the union of their rules. Unchanged input is a
   * no-op. With no group the connection table is emptied; otherwise every tracked flow is
   * re-checked against the new rules and those not allowed are removed. Rule hit counters
   * survive for rules that stay.
   */
  update(groupIds: readonly string[], rules: readonly DesiredRule[]): UpdateResult {
    const signature = JSON.stringify([groupIds, rules]);
    if (signature === this.#signature) {
      return { changed: false, revoked: 0, rejected: this.#rules.rejected };
    }
    this.#signature = signature;
    const kept = new Map<string, number>();
    this.#rules.ids.forEach((id, i) => kept.set(id, this.#hits[i]));
    this.#rules = new RuleSet(groupIds.length > 0 ? rules : []);
    this.#hits = Float64Array.from(this.#rules.ids, (id) => kept.get(id) ?? 0);
    this.#enabled = groupIds.length > 0;
    let revoked = 0;
    if (!this.#enabled) {
      this.#ct.clear();
    } else {
      const remote = new Int32Array(4);
      revoked = this.#ct.retain((meta, src, dst, _sport, dport, originEgress) => {
        remote.set(originEgress ? dst : src);
        const family = meta >> 8;
        const proto = meta & 0xff;
        const ported = proto === IP_PROTO_TCP || proto === IP_PROTO_UDP;
        const dir: Direction = originEgress ? "egress" : "ingress";
        return this.#rules.match(dir, family, proto, remote, ported, dport) >= 0;
      });
      this.#counts[C_REVOKED] += revoked;
    }
    return { changed: true, revoked, rejected: this.#rules.rejected };
  }

  /**
   * Decides on one Ethernet frame travelling in `dir` and counts the decision. Never throws;
   * allocates nothing. `now` (milliseconds on the filter's clock) lets a caller read the clock
   * once per burst: reading it costs more than filtering a packet of a known flow.
   */
  filter(frame: Uint8Array, dir: Direction, now: number = this.#now()): FilterVerdict {
    const v = this.#decide(frame, dir, now);
    if (!v.pass) this.#counts[dir === "ingress" ? C_DROP_INGRESS : C_DROP_EGRESS]++;
    return v;
  }

  #decide(frame: Uint8Array, dir: Direction, now: number): FilterVerdict {
    const info = this.#info;
    switch (parseFrame(frame, info, this.#inner)) {
      case ParseResult.ARP:
        this.#counts[C_PASS_LINK_LOCAL]++;
        return PASS_LINK_LOCAL;
      case ParseResult.OTHER:
        this.#counts[C_DROP_ETHERTYPE]++;
        return DROP_ETHERTYPE;
      case ParseResult.MALFORMED:
        this.#counts[C_DROP_MALFORMED]++;
        return DROP_MALFORMED;
    }
    if (linkLocal(info, dir)) {
      this.#counts[C_PASS_LINK_LOCAL]++;
      return PASS_LINK_LOCAL;
    }
    if (info.quotesPacket && this.#related(info, this.#inner, now)) {
      this.#counts[C_PASS_RELATED]++;
      return PASS_RELATED;
    }
    const egress = dir === "egress";
    // Later fragments carry neither ports nor an ICMP header, so they are never tracked.
    const tracked = info.hasPorts || isEchoRequest(info) || isEchoReply(info);
    let known = false;
    if (tracked) {
      const hit = this.#lookup(info, now);
      known = hit !== NOT_FOUND;
      if (known) {
        const slot = hit >> 1;
        const reply = (hit & 1) === 1;
        // A flow's own orientation only travels its own way: anything else is someone
        // else's packet that happens to carry the same addresses.
        if (reply !== (this.#ct.originEgress(slot) === egress)) {
          this.#advance(slot, reply, info, now);
          this.#counts[C_PASS_ESTABLISHED]++;
          return PASS_ESTABLISHED;
        }
      }
    }
    const remote = egress ? info.dst : info.src;
    const rule = this.#rules.match(dir, info.family, info.proto, remote, info.hasPorts, info.dport);
    if (rule < 0) {
      this.#counts[C_DROP_NOT_ALLOWED]++;
      return DROP_NOT_ALLOWED;
    }
    // Only what opens a flow opens one: an unsolicited echo reply or RST, or a packet against
    // the way of a known flow, is passed by its rule alone and leaves no state behind.
    if (tracked && !known && !isEchoReply(info) && !(info.tcpFlags & TCP_RST)) {
      if (!this.#track(info, egress, now)) {
        this.#counts[C_CONNTRACK_FULL]++;
        return DROP_FULL;
      }
    }
    this.#hits[rule]++;
    return PASS_RULE;
  }

  /** Finds the flow of `p`; ICMP echo uses the identifier as a port, on the requester's side. */
  #lookup(p: PacketInfo, now: number): number {
    const meta = metaOf(p.family, p.proto);
    if (p.hasPorts) return this.#ct.lookup(meta, p.src, p.dst, p.sport, p.dport, now);
    const hit = isEchoRequest(p)
      ? this.#ct.lookup(meta, p.src, p.dst, p.icmpId, 0, now)
      : this.#ct.lookup(meta, p.src, p.dst, 0, p.icmpId, now);
    // An echo request travelling as a reply (identifier 0 both ways) is a new request.
    if (hit !== NOT_FOUND && ((hit & 1) === 1) === isEchoRequest(p)) return NOT_FOUND;
    return hit;
  }

  #track(p: PacketInfo, egress: boolean, now: number): boolean {
    const t = this.#timeouts;
    const meta = metaOf(p.family, p.proto);
    this.#ct.sweep(now, SWEEP_PER_INSERT);
    let slot: number;
    if (p.hasPorts) {
      let state = 0;
      let timeout = t.udpUnreplied;
      if (p.proto === IP_PROTO_TCP) {
        // A flow picked up mid-stream (the filter was attached to a live connection, or the
        // actor restarted) is taken as established.
        const synOnly = (p.tcpFlags & (TCP_SYN | TCP_ACK)) === TCP_SYN;
        state = synOnly ? TCP_SYN_SENT : TCP_ESTABLISHED;
        timeout = synOnly ? t.tcpSynSent : t.tcpEstablished;
      }
      slot = this.#ct.insert(
        meta,
        p.src,
        p.dst,
        p.sport,
        p.dport,
        egress,
        state,
        now + timeout,
        now,
      );
    } else {
      slot = this.#ct.insert(meta, p.src, p.dst, p.icmpId, 0, egress, 0, now + t.icmpEcho, now);
    }
    return slot !== NOT_FOUND;
  }

  /** Moves a flow on with one more packet of it. */
  #advance(slot: number, reply: boolean, p: PacketInfo, now: number): void {
    const ct = this.#ct;
    const t = this.#timeouts;
    const seenReply = reply || ct.seenReply(slot);
    if (p.proto === IP_PROTO_UDP) {
      ct.update(slot, 0, seenReply, now + (seenReply ? t.udpReplied : t.udpUnreplied));
      return;
    }
    if (p.proto !== IP_PROTO_TCP) {
      ct.update(slot, 0, seenReply, now + t.icmpEcho);
      return;
    }
    const f = p.tcpFlags;
    let state = ct.state(slot);
    if (f & TCP_RST) {
      state = TCP_CLOSED;
    } else if (!reply && (f & (TCP_SYN | TCP_ACK)) === TCP_SYN && state >= TCP_CLOSING) {
      // The same ports opened again after a close.
      ct.update(slot, TCP_SYN_SENT, false, now + t.tcpSynSent);
      return;
    } else if (f & TCP_FIN) {
      if (state !== TCP_CLOSED) state = TCP_CLOSING;
    } else if (state === TCP_SYN_SENT && reply && (f & TCP_SYN) && (f & TCP_ACK)) {
      state = TCP_SYN_RECEIVED;
    } else if (state === TCP_SYN_RECEIVED && !reply && (f & TCP_ACK)) {
      state = TCP_ESTABLISHED;
    }
    ct.update(slot, state, seenReply, now + tcpTimeout(t, state));
  }

  /**
   * True when the ICMP error `p` quotes a packet of a tracked flow and goes back to that
   * packet's sender (routers along the way may send it, so its source is not checked).
   */
  #related(p: PacketInfo, q: PacketInfo, now: number): boolean {
    if (q.family !== p.family) return false;
    for (let w = 0; w < 4; w++) if (q.src[w] !== p.dst[w]) return false;
    if (q.hasPorts) {
      return this.#ct.lookup(metaOf(q.family, q.proto), q.src, q.dst, q.sport, q.dport, now) !==
        NOT_FOUND;
    }
    if (isEchoRequest(q) || isEchoReply(q)) return this.#lookup(q, now) !== NOT_FOUND;
    return false;
  }

  /**
   * The counters by name: `sg_drop_ingress`, `sg_drop_egress`, `sg_conntrack_entries` and
   * `sg_conntrack_full` always, `sg_rule_hit_<id>` for every current rule, the others (drop
   * and pass reasons, revoked flows) once not zero.
   */
  counters(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 0; i < COUNTERS; i++) {
      const always = i === C_DROP_INGRESS || i === C_DROP_EGRESS || i === C_CONNTRACK_FULL;
      if (always || this.#counts[i] !== 0) out[COUNTER_NAMES[i]] = this.#counts[i];
    }
    out.sg_conntrack_entries = this.#ct.size;
    this.#rules.ids.forEach((id, i) => out[`sg_rule_hit_${id}`] = this.#hits[i]);
    return out;
  }
}

function tcpTimeout(t: Timeouts, state: number): number {
  switch (state) {
    case TCP_SYN_SENT:
      return t.tcpSynSent;
    case TCP_SYN_RECEIVED:
      return t.tcpSynReceived;
    case TCP_CLOSING:
      return t.tcpClosing;
    case TCP_CLOSED:
      return t.tcpClosed;
    default:
      return t.tcpEstablished;
  }
}

/** Addresses as signed words, like {@link PacketInfo.src}. */
const GATEWAY4 = read32(GATEWAY_IPV4, 0) | 0;
const GATEWAY6 = Int32Array.from([0, 1, 2, 3], (w) => read32(GATEWAY_IPV6, w * 4));
const IPV4_BROADCAST_WORD = -1;
/** ff02::1:2, where DHCPv6 clients send. */
const ALL_DHCP_SERVERS = Int32Array.of(0xff020000, 0, 0, 0x00010002);

function isGateway6(a: Int32Array): boolean {
  return a[0] === GATEWAY6[0] && a[1] === GATEWAY6[1] && a[2] === GATEWAY6[2] &&
    a[3] === GATEWAY6[3];
}

function isAllDhcpServers(a: Int32Array): boolean {
  return a[0] === ALL_DHCP_SERVERS[0] && a[1] === ALL_DHCP_SERVERS[1] &&
    a[2] === ALL_DHCP_SERVERS[2] && a[3] === ALL_DHCP_SERVERS[3];
}

/**
 * Neighbor discovery (hop limit 255: it never crossed a router) and DHCP between the guest and
 * the gateway: what keeps the guest on the network passes whatever the rules say.
 */
function linkLocal(p: PacketInfo, dir: Direction): boolean {
  if (p.family === 6 && p.proto === IP_PROTO_ICMPV6) {
    return p.hopLimit === NDP_HOP_LIMIT && p.icmpType >= ICMPV6_ROUTER_SOLICIT &&
      p.icmpType <= ICMPV6_NEIGHBOR_ADVERT &&
      (p.icmpType !== ICMPV6_ROUTER_ADVERT || dir === "ingress") &&
      (p.icmpType !== ICMPV6_ROUTER_SOLICIT || dir === "egress");
  }
  if (p.proto !== IP_PROTO_UDP || !p.hasPorts) return false;
  if (p.family === 4) {
    return dir === "egress"
      ? p.sport === DHCPV4_CLIENT_PORT && p.dport === DHCPV4_SERVER_PORT &&
        (p.dst[0] === GATEWAY4 || p.dst[0] === IPV4_BROADCAST_WORD)
      : p.sport === DHCPV4_SERVER_PORT && p.dport === DHCPV4_CLIENT_PORT && p.src[0] === GATEWAY4;
  }
  return dir === "egress"
    ? p.sport === DHCPV6_CLIENT_PORT && p.dport === DHCPV6_SERVER_PORT &&
      (isGateway6(p.dst) || isAllDhcpServers(p.dst))
    : p.sport === DHCPV6_SERVER_PORT && p.dport === DHCPV6_CLIENT_PORT && isGateway6(p.src);
}
