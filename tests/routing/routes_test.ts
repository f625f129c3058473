import { assertEquals } from "../assert.ts";
import { buildTable, computeRoutes } from "../../routing/routes.ts";
import { parseIpv4, parseIpv6 } from "../../wire/addr.ts";

const m = (id: string, ipv4: string, ipv6: string, r4: string[] = [], r6: string[] = []) => ({
  id,
  ipv4,
  ipv6,
  routedIpv4Prefixes: r4,
  routedIpv6Prefixes: r6,
});

Deno.test("every member's /32, /128 and routed prefixes become routes", () => {
  const { routes, conflicts } = computeRoutes([
    m("b", "10.0.0.3", "fd00::3", ["192.168.9.0/24"], ["fd00:9::/64"]),
    m("a", "10.0.0.2", ""),
  ]);
  assertEquals(conflicts, []);
  assertEquals(routes, [
    { prefix: "10.0.0.2/32", nicId: "a" },
    { prefix: "10.0.0.3/32", nicId: "b" },
    { prefix: "fd00::3/128", nicId: "b" },
    { prefix: "192.168.9.0/24", nicId: "b" },
    { prefix: "fd00:9::/64", nicId: "b" },
  ]);
});

Deno.test("a prefix claimed twice stays with the first member by id, whatever the order", () => {
  const one = computeRoutes([
    m("b", "10.0.0.3", "", ["10.9.0.0/16"]),
    m("a", "10.0.0.2", "", ["10.9.0.0/16"]),
  ]);
  const two = computeRoutes([
    m("a", "10.0.0.2", "", ["10.9.0.0/16"]),
    m("b", "10.0.0.3", "", ["10.9.0.0/16"]),
  ]);
  assertEquals(one, two);
  assertEquals(one.conflicts, [{ prefix: "10.9.0.0/16", kept: "a", refused: "b" }]);
});

Deno.test("a table built from the routes resolves vNIC ids; unknown ids and junk are skipped", () => {
  const { routes } = computeRoutes([
    m("a", "10.0.0.2", "fd00::2", ["10.5.0.0/16"]),
    m("b", "bogus", "fd00::3"),
  ]);
  const t = buildTable(routes, (id) => (id === "a" ? "nic-a" : undefined));
  assertEquals(t.lookup(parseIpv4("10.5.1.1") as Uint8Array), "nic-a");
  assertEquals(t.lookup(parseIpv6("fd00::2") as Uint8Array), "nic-a");
  assertEquals(t.lookup(parseIpv6("fd00::3") as Uint8Array), undefined);
  assertEquals(t.size, 3);
});
