/**
 * Compiles the allow rules of a vNIC's security groups into a matcher for the packet path.
 *
 * Rules are sorted once into buckets by direction, address family and protocol class, so a
 * packet only looks at the rules that could match it; within a bucket each rule is a port range
 * and a masked address compare on typed arrays. The rule order is kept, so the first matching
 * rule of the list is the one credited with a hit.
 * @module
 */

import type { DesiredRule } from "../daemon/protocol.ts";
import { parseCidr } from "../wire/addr.ts";
import { read32 } from "../wire/bytes.ts";
import { WireError } from "../wire/error.ts";
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP } from "../wire/ipv4.ts";
import { IP_PROTO_ICMPV6 } from "../wire/ipv6.ts";

/** Direction of a packet as the VM sees it: to the VM, or from it. */
export type Direction = "ingress" | "egress";

const DIR_INGRESS = 0;
const DIR_EGRESS = 1;
/** Protocol classes: a rule names one of them, or all (ALL). */
const CLASS_TCP = 0;
const CLASS_UDP = 1;
const CLASS_ICMP = 2;
const CLASS_ICMPV6 = 3;
const CLASS_OTHER = 4;
const CLASSES = 5;
const FAMILIES = 2;
const WORDS = 4;
const PORT_MAX = 0xffff;

/** The bucket of a direction, family and protocol class. */
function bucketIndex(dir: number, family: number, cls: number): number {
  return (dir * FAMILIES + (family === 4 ? 0 : 1)) * CLASSES + cls;
}

/** The protocol class of an IP protocol number within a family. */
function classOf(family: number, proto: number): number {
  if (proto === IP_PROTO_TCP) return CLASS_TCP;
  if (proto === IP_PROTO_UDP) return CLASS_UDP;
  if (family === 4 && proto === IP_PROTO_ICMP) return CLASS_ICMP;
  if (family === 6 && proto === IP_PROTO_ICMPV6) return CLASS_ICMPV6;
  return CLASS_OTHER;
}

/** The classes a rule's protocol covers, and the only family it can apply to (0: either). */
function coverage(protocol: string): { classes: number[]; family: 0 | 4 | 6 } | null {
  switch (protocol) {
    case "ALL":
      return { classes: [CLASS_TCP, CLASS_UDP, CLASS_ICMP, CLASS_ICMPV6, CLASS_OTHER], family: 0 };
    case "TCP":
      return { classes: [CLASS_TCP], family: 0 };
    case "UDP":
      return { classes: [CLASS_UDP], family: 0 };
    case "ICMP":
      return { classes: [CLASS_ICMP], family: 4 };
    case "ICMPV6":
      return { classes: [CLASS_ICMPV6], family: 6 };
    default:
      return null;
  }
}

/** A rule that could not be compiled; it matches nothing. */
export interface RejectedRule {
  id: string;
  /** What was wrong, naming the field and the value. */
  error: string;
}

/** Address words of a CIDR (mask and network), or null for "any". */
interface CompiledCidr {
  family: 4 | 6;
  mask: Int32Array;
  net: Int32Array;
}

function compileCidr(text: string): CompiledCidr | string | null {
  if (text === "") return null;
  const family = text.includes(":") ? 6 : 4;
  // A bare address is one host, as the API reads it.
  const c = parseCidr(text.includes("/") ? text : `${text}/${family === 4 ? 32 : 128}`, family);
  if (c instanceof WireError) return `cidr "${text}": ${c}`;
  const mask = new Int32Array(WORDS);
  const net = new Int32Array(WORDS);
  for (let w = 0; w * 4 < c.addr.length; w++) {
    const bits = Math.max(0, Math.min(32, c.prefixLen - w * 32));
    mask[w] = bits === 0 ? 0 : -1 << (32 - bits);
    net[w] = read32(c.addr, w * 4) & mask[w];
  }
  return { family, mask, net };
}

function portsOf(r: DesiredRule): { lo: number; hi: number } | string {
  const lo = r.portStart;
  // port_start alone (port_end 0) is that one port, as the API reads it.
  const hi = r.portEnd === 0 ? lo : r.portEnd;
  if (lo === 0 && hi === 0) return { lo: 0, hi: PORT_MAX };
  if (r.protocol !== "TCP" && r.protocol !== "UDP") {
    return `ports ${lo}-${hi} on protocol ${r.protocol}: ports are only for TCP and UDP`;
  }
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > PORT_MAX || hi < lo) {
    return `ports ${lo}-${hi}: need 1 <= port_start <= port_end <= ${PORT_MAX}`;
  }
  return { lo, hi };
}

/**
 * The compiled form of a rule list. {@link RuleSet.match} is the per-packet call; it does not
 * allocate.
 *
 * @example
 * ```ts
 * const rules = compileRules([{ id: "r1", securityGroupId: "g", direction: "INGRESS",
 *   protocol: "TCP", portStart: 22, portEnd: 22, cidr: "" }]);
 * rules.match("ingress", 4, 6, remoteWords, true, 22); // 0: rule r1
 * ```
 */
export class RuleSet {
  /** Rule ids, by index: what {@link RuleSet.match} returns indexes this. */
  readonly ids: readonly string[];
  /** Rules that were not compiled (and so allow nothing). */
  readonly rejected: readonly RejectedRule[];
  readonly #buckets: Int32Array[];
  readonly #portLo: Uint16Array;
  readonly #portHi: Uint16Array;
  readonly #mask: Int32Array;
  readonly #net: Int32Array;

  constructor(rules: readonly DesiredRule[]) {
    const n = rules.length;
    const ids: string[] = [];
    const rejected: RejectedRule[] = [];
    const lists: number[][] = Array.from({ length: 2 * FAMILIES * CLASSES }, () => []);
    this.#portLo = new Uint16Array(n);
    this.#portHi = new Uint16Array(n);
    this.#mask = new Int32Array(n * WORDS);
    this.#net = new Int32Array(n * WORDS);
    for (let i = 0; i < n; i++) {
      const r = rules[i];
      ids.push(r.id);
      const dir = r.direction === "INGRESS"
        ? DIR_INGRESS
        : r.direction === "EGRESS"
        ? DIR_EGRESS
        : -1;
      const cov = coverage(r.protocol);
      const ports = portsOf(r);
      const cidr = compileCidr(r.cidr);
      const error = dir < 0
        ? `direction "${r.direction}": need INGRESS or EGRESS`
        : cov === null
        ? `protocol "${r.protocol}": need ALL, TCP, UDP, ICMP or ICMPV6`
        : typeof ports === "string"
        ? ports
        : typeof cidr === "string"
        ? cidr
        : cidr !== null && cov.family !== 0 && cidr.family !== cov.family
        ? `cidr "${r.cidr}" is IPv${cidr.family}, protocol ${r.protocol} is IPv${cov.family} only`
        : null;
      if (error !== null || cov === null || typeof ports === "string" || typeof cidr === "string") {
        rejected.push({ id: r.id, error: error ?? "" });
        continue;
      }
      this.#portLo[i] = ports.lo;
      this.#portHi[i] = ports.hi;
      if (cidr) {
        this.#mask.set(cidr.mask, i * WORDS);
        this.#net.set(cidr.net, i * WORDS);
      }
      for (const family of [4, 6]) {
        if (cov.family !== 0 && cov.family !== family) continue;
        if (cidr && cidr.family !== family) continue;
        for (const cls of cov.classes) lists[bucketIndex(dir, family, cls)].push(i);
      }
    }
    this.ids = ids;
    this.rejected = rejected;
    this.#buckets = lists.map((l) => Int32Array.from(l));
  }

  /** Number of rules, rejected ones included. */
  get size(): number {
    return this.ids.length;
  }

  /**
   * The index of the first rule that allows a connection, or -1. `remote` is the far end's
   * address as signed words ({@link PacketInfo.src}) (the source for ingress, the destination for egress); `port` the
   * destination port of the connection's first packet, meaningful when `hasPorts`. A rule
   * with a port range never matches a packet without ports (a later fragment).
   */
  match(
    dir: Direction,
    family: number,
    proto: number,
    remote: Int32Array,
    hasPorts: boolean,
    port: number,
  ): number {
    const list = this
      .#buckets[
        bucketIndex(dir === "ingress" ? DIR_INGRESS : DIR_EGRESS, family, classOf(family, proto))
      ];
    const lo = this.#portLo;
    const hi = this.#portHi;
    const mask = this.#mask;
    const net = this.#net;
    const a0 = remote[0], a1 = remote[1], a2 = remote[2], a3 = remote[3];
    for (let k = 0; k < list.length; k++) {
      const i = list[k];
      if (lo[i] !== 0 || hi[i] !== PORT_MAX) {
        if (!hasPorts || port < lo[i] || port > hi[i]) continue;
      }
      const w = i * WORDS;
      if (
        (a0 & mask[w]) === net[w] && (a1 & mask[w + 1]) === net[w + 1] &&
        (a2 & mask[w + 2]) === net[w + 2] && (a3 & mask[w + 3]) === net[w + 3]
      ) return i;
    }
    return -1;
  }
}

/** Compiles `rules`; see {@link RuleSet}. */
export function compileRules(rules: readonly DesiredRule[]): RuleSet {
  return new RuleSet(rules);
}
