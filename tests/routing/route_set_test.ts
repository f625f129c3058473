/**
 * RouteSet: the route table a vNIC keeps change by change (topology deltas) must answer every
 * lookup exactly as a table built at once from the same routes and members would.
 */
import { assert, assertEquals } from "../assert.ts";
import { buildTable, type RouteEntry, RouteSet } from "../../routing/routes.ts";
import { parseIpv4, parseIpv6 } from "../../wire/addr.ts";

const MEMBERS = ["a", "b", "c", "d", "e"];
/** Host routes, covering prefixes and one of each family that no route covers. */
const PREFIXES = [
  "10.9.0.1/32",
  "10.9.0.2/32",
  "10.9.0.3/32",
  "10.9.0.0/24",
  "192.168.5.0/24",
  "192.168.0.0/16",
  "fd00::1/128",
  "fd00::2/128",
  "fd00:5::/64",
  "fd00::/48",
];
const PROBES = [
  "10.9.0.1",
  "10.9.0.2",
  "10.9.0.3",
  "10.9.0.77",
  "192.168.5.9",
  "192.168.6.9",
  "172.16.0.1",
  "fd00::1",
  "fd00::2",
  "fd00:0:0:1::9",
  "fd00:5::9",
  "fd01::1",
].map((a) => (a.includes(":") ? parseIpv6(a) : parseIpv4(a)) as Uint8Array);
const STEPS = 2_000;

/** A deterministic sequence of numbers in [0, 1): the same changes on every run. */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

function pick<T>(rnd: () => number, from: T[]): T {
  return from[Math.floor(rnd() * from.length)];
}

/** What a table built at once from the current routes and members answers for every probe. */
function expected(routes: Map<string, string>, members: Map<string, string>): unknown[] {
  const entries: RouteEntry[] = [...routes].map(([prefix, nicId]) => ({ prefix, nicId }));
  const t = buildTable(entries, (id) => members.get(id));
  return PROBES.map((a) => t.lookup(a));
}

Deno.test("RouteSet: any sequence of member and route changes answers as a table built at once", () => {
  const rnd = lcg(7);
  const set = new RouteSet<string>();
  const routes = new Map<string, string>();
  const members = new Map<string, string>();
  for (let step = 0; step < STEPS; step++) {
    const r = rnd();
    if (r < 0.25) {
      // A member joins or changes: a new value (as a new device handle would be).
      const id = pick(rnd, MEMBERS);
      const value = `${id}#${step}`;
      set.setMember(id, value);
      members.set(id, value);
    } else if (r < 0.4) {
      const id = pick(rnd, MEMBERS);
      assertEquals(set.removeMember(id), members.get(id), "removeMember returns the value");
      members.delete(id);
    } else if (r < 0.8) {
      // A route is added, or moves to another member.
      const prefix = pick(rnd, PREFIXES);
      const id = pick(rnd, MEMBERS);
      set.setRoute(prefix, id);
      routes.set(prefix, id);
    } else {
      const prefix = pick(rnd, PREFIXES);
      set.removeRoute(prefix);
      routes.delete(prefix);
    }
    assertEquals(
      PROBES.map((a) => set.table.lookup(a)),
      expected(routes, members),
      `after step ${step}`,
    );
  }
  assertEquals(
    [...set.routes()].map((e) => [e.prefix, e.nicId]).sort(),
    [...routes].sort(),
    "the routes it knows",
  );
});

Deno.test("RouteSet: a member that leaves is no longer held; its routes come back with it", () => {
  const set = new RouteSet<{ ring: string }>();
  const a = { ring: "a's ring" };
  set.setRoute("10.9.0.1/32", "a");
  set.setRoute("10.9.0.0/24", "a");
  set.setMember("a", a);
  const addr = parseIpv4("10.9.0.1") as Uint8Array;
  assert(set.table.lookup(addr) === a);

  assert(set.removeMember("a") === a);
  assertEquals(set.table.size, 0, "no table entry holds the member any more");
  assertEquals([...set.members()], [], "nor does the set");
  assertEquals(set.table.lookup(addr), undefined);

  const again = { ring: "a's new ring" };
  set.setMember("a", again);
  assertEquals(set.table.size, 2, "its routes are back");
  assert(set.table.lookup(addr) === again, "to the new value");
  set.removeRoute("10.9.0.1/32");
  assert(set.table.lookup(addr) === again, "the /24 still covers it");
  set.setRoute("10.9.0.0/24", "b");
  assertEquals(set.table.lookup(addr), undefined, "moved to a member not known yet");
});
