/**
 * The routes of one network, computed from its members: each vNIC's /32 and /128 and its
 * routed prefixes. The network actor publishes this list; every vNIC actor builds its own
 * {@link RouteTable} from its copy (shared-nothing).
 * @module
 */

import { type Cidr, formatCidr, parseCidr, parseIpv4, parseIpv6 } from "../wire/addr.ts";
import { WireError } from "../wire/error.ts";
import { RouteTable } from "./table.ts";

/** One member of a network, as routing sees it (addresses as text, "" when absent). */
export interface RouteMember {
  id: string;
  ipv4: string;
  ipv6: string;
  routedIpv4Prefixes: string[];
  routedIpv6Prefixes: string[];
}

/** One route: a normalised prefix and the vNIC that holds it. */
export interface RouteEntry {
  prefix: string;
  nicId: string;
}

/** A prefix two members claim; the first (by vNIC id) keeps it. */
export interface RouteConflict {
  prefix: string;
  kept: string;
  refused: string;
}

function cidrOf(text: string, family: 4 | 6): Cidr | null {
  if (!text.includes("/")) {
    const a = family === 4 ? parseIpv4(text) : parseIpv6(text);
    return a instanceof WireError ? null : { addr: a, prefixLen: family === 4 ? 32 : 128 };
  }
  const c = parseCidr(text, family);
  return c instanceof WireError ? null : c;
}

/**
 * Computes the routes of a network. Members are taken in id order so that the outcome of a
 * conflict does not depend on arrival order; invalid entries are skipped (the api validates
 * them, this is defence in depth).
 */
export function computeRoutes(
  members: RouteMember[],
): { routes: RouteEntry[]; conflicts: RouteConflict[] } {
  const byPrefix = new Map<string, string>();
  const conflicts: RouteConflict[] = [];
  const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const m of sorted) {
    const own: Array<[string, 4 | 6]> = [];
    if (m.ipv4) own.push([m.ipv4, 4]);
    if (m.ipv6) own.push([m.ipv6, 6]);
    for (const p of m.routedIpv4Prefixes) own.push([p, 4]);
    for (const p of m.routedIpv6Prefixes) own.push([p, 6]);
    for (const [text, family] of own) {
      const c = cidrOf(text, family);
      if (!c) continue;
      const prefix = formatCidr(c);
      const holder = byPrefix.get(prefix);
      if (holder !== undefined && holder !== m.id) {
        conflicts.push({ prefix, kept: holder, refused: m.id });
        continue;
      }
      byPrefix.set(prefix, m.id);
    }
  }
  const routes = [...byPrefix].map(([prefix, nicId]) => ({ prefix, nicId }));
  return { routes, conflicts };
}

/** Builds a lookup table from published routes; `resolve` maps a vNIC id to its route value. */
export function buildTable<T>(
  routes: RouteEntry[],
  resolve: (nicId: string) => T | undefined,
): RouteTable<T> {
  const t = new RouteTable<T>();
  for (const r of routes) {
    const v = resolve(r.nicId);
    if (v === undefined) continue;
    const c = cidrOf(r.prefix, r.prefix.includes(":") ? 6 : 4);
    if (c) t.insert(c, v);
  }
  return t;
}

/** One route of a {@link RouteSet}: its prefix as published, parsed, and the vNIC holding it. */
export interface RouteSetEntry extends RouteEntry {
  cidr: Cidr;
}

/**
 * A route table kept in step with a network's routes and members, change by change, so that a
 * vNIC applies a topology change in time (and garbage) proportional to the change, not to the
 * size of the network. A route whose member is not known stays out of the table until the
 * member is set; a member's value is what the table answers for its routes.
 */
export class RouteSet<T> {
  /** Every route whose member is known, to that member's value. */
  readonly table = new RouteTable<T>();
  #routes = new Map<string, RouteSetEntry>();
  #byMember = new Map<string, Set<string>>();
  #members = new Map<string, T>();

  /** The value of member `id`, if it is known. */
  member(id: string): T | undefined {
    return this.#members.get(id);
  }

  /** Known members' values. */
  members(): IterableIterator<T> {
    return this.#members.values();
  }

  /** Known routes, with or without a known member. */
  routes(): IterableIterator<RouteSetEntry> {
    return this.#routes.values();
  }

  /** Adds or replaces member `id`: its routes lead to `value` from now on. */
  setMember(id: string, value: T): void {
    this.#members.set(id, value);
    for (const prefix of this.#byMember.get(id) ?? []) {
      this.table.insert(this.#routes.get(prefix)!.cidr, value);
    }
  }

  /** Removes member `id` and its routes from the table (they return if it is set again). */
  removeMember(id: string): T | undefined {
    const value = this.#members.get(id);
    if (value === undefined) return undefined;
    this.#members.delete(id);
    for (const prefix of this.#byMember.get(id) ?? []) {
      this.table.remove(this.#routes.get(prefix)!.cidr);
    }
    return value;
  }

  /** Routes `prefix` to member `nicId`, moving it from another member; a bad prefix is skipped. */
  setRoute(prefix: string, nicId: string): void {
    const old = this.#routes.get(prefix);
    if (old?.nicId === nicId) return;
    if (old) this.removeRoute(prefix);
    const cidr = cidrOf(prefix, prefix.includes(":") ? 6 : 4);
    if (!cidr) return;
    this.#routes.set(prefix, { prefix, nicId, cidr });
    let own = this.#byMember.get(nicId);
    if (!own) this.#byMember.set(nicId, own = new Set());
    own.add(prefix);
    const value = this.#members.get(nicId);
    if (value !== undefined) this.table.insert(cidr, value);
  }

  /** Removes the route of `prefix`, if there is one. */
  removeRoute(prefix: string): void {
    const old = this.#routes.get(prefix);
    if (!old) return;
    this.#routes.delete(prefix);
    const own = this.#byMember.get(old.nicId)!;
    own.delete(prefix);
    if (own.size === 0) this.#byMember.delete(old.nicId);
    if (this.#members.has(old.nicId)) this.table.remove(old.cidr);
  }
}
