import { assertEquals } from "../assert.ts";
import { kernelForm, KernelRoutes, planRoutes, ROUTE_PROTO } from "../../actors/tun_routes.ts";

Deno.test("plan adds what is missing and removes only our stale routes", () => {
  const plan = planRoutes(["10.1.0.0/24", "fd00:1::/64", "192.0.2.7/32"], [
    { dst: "10.1.0.0/24", proto: ROUTE_PROTO },
    { dst: "10.9.0.0/16", proto: ROUTE_PROTO },
    { dst: "fe80::/64", proto: "kernel" },
    { dst: "10.2.0.0/24", proto: "static" },
  ]);
  assertEquals(plan, { add: ["192.0.2.7", "fd00:1::/64"], remove: ["10.9.0.0/16"] });
});

Deno.test("host routes are compared in the kernel's form", () => {
  assertEquals(kernelForm("192.0.2.7/32"), "192.0.2.7");
  assertEquals(kernelForm("2001:db8::1/128"), "2001:db8::1");
  assertEquals(kernelForm("2001:db8::/64"), "2001:db8::/64");
  assertEquals(planRoutes(["192.0.2.7/32"], [{ dst: "192.0.2.7", proto: "77" }]), {
    add: [],
    remove: [],
  });
});

async function inNetns(script: string): Promise<{ code: number; out: string }> {
  const out = await new Deno.Command("unshare", {
    args: ["-n", "--", "sh", "-c", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

Deno.test({
  name: "reconcile repairs drift in both directions (inside a private network namespace)",
  async fn() {
    // The test re-runs itself inside `unshare -n`, so routes only ever touch a namespace that
    // lives as long as this process; a persistent TUN device of that namespace stands in for ours.
    const probe = await inNetns("ip tuntap add mvtest0 mode tun && echo ok");
    if (!probe.out.includes("ok")) throw new Error(`cannot create a namespace here: ${probe.out}`);
    const script = `
      set -e
      ip tuntap add mvtest0 mode tun
      ip link set mvtest0 up
      ${Deno.execPath()} run --allow-run=ip --allow-read ${
      new URL("./fixtures/reconcile_once.ts", import.meta.url).pathname
    } mvtest0 10.1.0.0/24 fd00:1::/64
      ip route del 10.1.0.0/24 dev mvtest0
      ip route add 10.7.0.0/24 dev mvtest0 proto ${ROUTE_PROTO}
      ip route add 10.8.0.0/24 dev mvtest0 proto static
      ${Deno.execPath()} run --allow-run=ip --allow-read ${
      new URL("./fixtures/reconcile_once.ts", import.meta.url).pathname
    } mvtest0 10.1.0.0/24 fd00:1::/64
      echo ROUTES; ip -j -4 route show dev mvtest0; echo; ip -j -6 route show dev mvtest0
    `;
    const r = await inNetns(script);
    assertEquals(r.code, 0, r.out);
    const lines = r.out.split("\n");
    assertEquals(lines[0], 'PLAN {"add":["10.1.0.0/24","fd00:1::/64"],"remove":[]}');
    assertEquals(lines[1], 'PLAN {"add":["10.1.0.0/24"],"remove":["10.7.0.0/24"]}');
    const routes = r.out.split("ROUTES\n")[1].trim().split("\n")
      .filter((l) => l.trim() !== "")
      .flatMap((l) => JSON.parse(l) as Array<{ dst: string; protocol: string }>)
      .map((x) => `${x.dst} ${x.protocol}`);
    assertEquals(routes, ["10.1.0.0/24 77", "10.8.0.0/24 static", "fd00:1::/64 77"]);
  },
});

Deno.test("the kernel is asked with the device name and our protocol", async () => {
  const calls: string[] = [];
  const routes = new KernelRoutes("tun9", (cmd, args) => {
    calls.push([cmd, ...args].join(" "));
    const rows = args.includes("-4") ? [{ dst: "10.3.0.0/24", protocol: ROUTE_PROTO }] : [];
    return Promise.resolve(JSON.stringify(rows));
  });
  const plan = await routes.reconcile(["10.4.0.0/24"]);
  assertEquals(plan, { add: ["10.4.0.0/24"], remove: ["10.3.0.0/24"] });
  assertEquals(calls, [
    "ip -j -4 route show dev tun9",
    "ip -j -6 route show dev tun9",
    `ip route del 10.3.0.0/24 dev tun9 proto ${ROUTE_PROTO}`,
    `ip route replace 10.4.0.0/24 dev tun9 proto ${ROUTE_PROTO}`,
  ]);
});
