import { assert, assertEquals } from "../assert.ts";
import { startTestApi } from "../api/helpers.ts";
import { until } from "../helpers/daemon.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI as a user would, with exactly the permissions of `deno task cli`. */
async function cli(...args: string[]): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      `--config=${ROOT}deno.json`,
      "--allow-net",
      "--allow-read",
      "--allow-env",
      `${ROOT}api/cli.ts`,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("cli: networks and vNICs, tables and JSON", async () => {
  await using t = await startTestApi();
  const s = `--server=${t.target}`;
  let r = await cli(
    s,
    "network",
    "create",
    "blue",
    "--ipv4-subnet",
    "10.50.0.0/24",
    "--ipv6-prefix",
    "fd00:50::/64",
    "--dns",
    "10.50.0.53",
  );
  assertEquals(r.code, 0, r.stderr);
  assert(/ipv4_subnet\s+10\.50\.0\.0\/24/.test(r.stdout), r.stdout);

  r = await cli(s, "--json", "network", "get", "blue");
  assertEquals(r.code, 0, r.stderr);
  const net = JSON.parse(r.stdout);
  assertEquals([net.name, net.ipv6_prefix, net.dns_servers], ["blue", "fd00:50::/64", [
    "10.50.0.53",
  ]]);

  r = await cli(s, "network", "list");
  assertEquals(r.stdout.split("\n")[0].split(/\s+/), [
    "NAME",
    "ID",
    "IPV4",
    "IPV6",
    "NICS",
    "PUBLIC",
  ]);
  assert(r.stdout.includes(net.id));

  r = await cli(s, "network", "update", "blue", "--ntp", "pool.ntp.org");
  assertEquals(r.code, 0, r.stderr);
  assert(r.stdout.includes("pool.ntp.org") && r.stdout.includes("10.50.0.53"), "DNS kept, NTP set");

  r = await cli(
    s,
    "--json",
    "nic",
    "create",
    "--network",
    "blue",
    "--name",
    "web-1",
    "--route",
    "192.168.7.0/24",
    "--route",
    "fd70::/64",
  );
  assertEquals(r.code, 0, r.stderr);
  const nic = JSON.parse(r.stdout);
  assertEquals([nic.ipv4_address, nic.routed_ipv4_prefixes, nic.routed_ipv6_prefixes], [
    "10.50.0.1",
    ["192.168.7.0/24"],
    ["fd70::/64"],
  ]);
  assertEquals(nic.socket_path, `${t.socketDir}/${nic.id}.sock`);

  r = await cli(s, "nic", "get", "web-1");
  assert(/socket_path\s+\S+\.sock/.test(r.stdout) && /state\s+CREATED/.test(r.stdout), r.stdout);
  r = await cli(s, "nic", "list", "--network", "blue");
  assert(
    r.stdout.startsWith("NAME") && r.stdout.includes("web-1") && r.stdout.includes("10.50.0.1"),
  );
  r = await cli(s, "--json", "nic", "update", "web-1");
  assertEquals(JSON.parse(r.stdout).routed_ipv4_prefixes, []);
  r = await cli(s, "nic", "attach", "web-1");
  assert(r.stdout.startsWith("attached:"), r.stdout);
  r = await cli(s, "version");
  assertEquals(r.stdout.trim(), (await t.client.call("GetVersion", {})).version);

  r = await cli(s, "network", "delete", "blue");
  assertEquals(r.code, 1);
  assert(r.stderr.startsWith("error: FAILED_PRECONDITION: "), r.stderr);
  r = await cli(s, "nic", "delete", "web-1");
  assertEquals([r.code, r.stdout.trim()], [0, "deleted vNIC web-1"]);
  r = await cli(s, "network", "delete", "blue", "--force");
  assertEquals(r.code, 0, r.stderr);
  r = await cli(s, "--json", "network", "list");
  assertEquals(JSON.parse(r.stdout), []);
});

Deno.test("cli: errors print the status and exit non-zero", async () => {
  await using t = await startTestApi();
  const s = `--server=${t.target}`;
  let r = await cli(s, "network", "get", "nope");
  assertEquals(r.code, 1);
  assertEquals(r.stderr.trim(), 'error: NOT_FOUND: network "nope" not found');
  r = await cli(s, "network", "create", "x", "--ipv4-subnet", "10.0.0.1/24");
  assertEquals(r.code, 1);
  assert(r.stderr.startsWith("error: INVALID_ARGUMENT: ipv4_subnet: "), r.stderr);
  r = await cli(s, "nic", "frobnicate");
  assertEquals(r.code, 2);
  assert(r.stderr.includes("unknown command") && r.stderr.includes("Usage:"), r.stderr);
  r = await cli(s, "network", "list", "--bogus");
  assertEquals(r.code, 2);
  r = await cli("--server=127.0.0.1:1", "version");
  assertEquals(r.code, 1);
  assert(r.stderr.startsWith("error: UNAVAILABLE: "), r.stderr);
  r = await cli("--help");
  assertEquals(r.code, 0);
  assert(r.stdout.startsWith("Usage: mvirt-net-cli"));
});

Deno.test("cli: watch prints events as they happen", async () => {
  await using t = await startTestApi();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--config=${ROOT}deno.json`,
      "--allow-net",
      "--allow-read",
      "--allow-env",
      `${ROOT}api/cli.ts`,
      `--server=${t.target}`,
      "--json",
      "watch",
      "networks",
      "--count",
      "2",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  await until(() => t.api.watchers.networks === 1, 10_000, "the CLI to watch");
  const net = await t.client.call("CreateNetwork", {
    name: "w",
    ipv4_enabled: true,
    ipv4_subnet: "10.9.0.0/24",
  });
  await t.client.call("DeleteNetwork", { id: net.id });
  const out = await output;
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(lines.map((l) => [l.kind, l.network_id, l.network?.name ?? null]), [
    ["network", net.id, "w"],
    ["network", net.id, null],
  ]);
});

Deno.test("cli: security groups, rules with hits, attach/detach, vNIC counters", async () => {
  await using t = await startTestApi();
  const s = `--server=${t.target}`;
  await t.client.call("CreateNetwork", {
    name: "blue",
    ipv4_enabled: true,
    ipv4_subnet: "10.50.0.0/24",
  });
  const nic = await t.client.call("CreateNic", { network_id: "blue", name: "web-1" });

  let r = await cli(s, "sg", "create", "web", "--description", "web servers");
  assertEquals(r.code, 0, r.stderr);
  assert(/description\s+web servers/.test(r.stdout) && /nic_count\s+0/.test(r.stdout), r.stdout);
  r = await cli(
    s,
    "--json",
    "sg",
    "rule",
    "add",
    "web",
    "--direction",
    "ingress",
    "--protocol",
    "tcp",
    "--port",
    "8000-8080",
    "--cidr",
    "192.168.0.0/16",
  );
  assertEquals(r.code, 0, r.stderr);
  const rule = JSON.parse(r.stdout);
  assertEquals(
    [rule.direction, rule.protocol, rule.port_start, rule.port_end, rule.cidr],
    ["RULE_DIRECTION_INGRESS", "RULE_PROTOCOL_TCP", 8000, 8080, "192.168.0.0/16"],
  );
  r = await cli(s, "sg", "rule", "add", "web", "--direction", "egress", "--protocol", "icmp");
  assertEquals(r.code, 0, r.stderr);
  const icmpId = r.stdout.split("\n")[1].split(/\s+/)[0];
  assert(/^[0-9a-f-]{36}$/.test(icmpId), r.stdout);

  r = await cli(s, "sg", "attach", "web", "web-1");
  assertEquals([r.code, r.stdout.trim()], [0, "attached security group web to vNIC web-1"]);
  r = await cli(s, "sg", "attach", "web", nic.id);
  assertEquals(r.stdout.trim(), `security group web was already attached to vNIC ${nic.id}`);
  const pushed = t.dataplane.requests.findLast((q) => q.type === "UpsertNic");
  assert(
    pushed?.type === "UpsertNic" && pushed.nic.rules.length === 2,
    "rules reached the dataplane",
  );

  t.dataplane.setCounters(nic.id, {
    [`sg_rule_hit_${rule.id}`]: 42,
    sg_drop_ingress: 5,
    sg_drop_egress: 0,
  });
  r = await cli(s, "sg", "list");
  assertEquals(r.stdout.split("\n")[0].split(/\s+/), [
    "NAME",
    "ID",
    "RULES",
    "NICS",
    "DESCRIPTION",
  ]);
  assert(/^web\s+\S+\s+2\s+1\s+web servers$/m.test(r.stdout), r.stdout);
  r = await cli(s, "sg", "get", "web");
  assertEquals(r.code, 0, r.stderr);
  assert(/nic_count\s+1/.test(r.stdout), r.stdout);
  const ruleLine = r.stdout.split("\n").find((l) => l.startsWith(rule.id))!;
  assertEquals(ruleLine.split(/\s+/), [
    rule.id,
    "ingress",
    "tcp",
    "8000-8080",
    "192.168.0.0/16",
    "42",
    "-",
  ]);
  const icmpLine = r.stdout.split("\n").find((l) => l.startsWith(icmpId))!;
  assertEquals(icmpLine.split(/\s+/).slice(1, 6), ["egress", "icmp", "any", "any", "0"]);
  r = await cli(s, "--json", "sg", "get", "web");
  assertEquals(JSON.parse(r.stdout).rules.map((x: { hits: number }) => x.hits), [42, 0]);

  r = await cli(s, "nic", "counters", "web-1");
  assertEquals(r.code, 0, r.stderr);
  assert(
    /^sg_drop_ingress\s+5$/m.test(r.stdout) && /^sg_drop_egress\s+0$/m.test(r.stdout),
    r.stdout,
  );
  assert(r.stdout.includes(`sg_rule_hit_${rule.id}  42`), r.stdout);

  r = await cli(s, "sg", "delete", "web");
  assertEquals(r.code, 1);
  assert(
    r.stderr.startsWith("error: FAILED_PRECONDITION: ") && r.stderr.includes("nic_count 1"),
    r.stderr,
  );
  r = await cli(s, "sg", "rule", "remove", icmpId);
  assertEquals([r.code, r.stdout.trim()], [0, `removed rule ${icmpId}`]);
  r = await cli(s, "sg", "detach", "web", "web-1");
  assertEquals(r.stdout.trim(), "detached security group web from vNIC web-1");
  r = await cli(s, "sg", "detach", "web", "web-1");
  assertEquals(r.stdout.trim(), "security group web was not attached to vNIC web-1");
  r = await cli(s, "sg", "attach", "web", "web-1");
  r = await cli(s, "sg", "delete", "web", "--force");
  assertEquals([r.code, r.stdout.trim()], [
    0,
    "deleted security group web (detached from 1 vNIC(s))",
  ]);
  r = await cli(s, "--json", "sg", "list");
  assertEquals(JSON.parse(r.stdout), []);
});

Deno.test("cli: security-group usage and API errors", async () => {
  await using t = await startTestApi();
  const s = `--server=${t.target}`;
  let r = await cli(s, "sg", "rule", "add", "web", "--direction", "sideways", "--protocol", "tcp");
  assertEquals(r.code, 2);
  assert(r.stderr.includes('--direction: "sideways" is not one of ingress, egress'), r.stderr);
  r = await cli(s, "sg", "rule", "add", "web", "--direction", "ingress");
  assertEquals(r.code, 2);
  assert(r.stderr.includes("--protocol is required"), r.stderr);
  r = await cli(
    s,
    "sg",
    "rule",
    "add",
    "web",
    "--direction",
    "ingress",
    "--protocol",
    "tcp",
    "--port",
    "http",
  );
  assertEquals(r.code, 2);
  assert(r.stderr.includes('--port: expected N or N-M, got "http"'), r.stderr);
  r = await cli(s, "sg", "attach", "web");
  assertEquals(r.code, 2);
  r = await cli(
    s,
    "sg",
    "rule",
    "add",
    "nope",
    "--direction",
    "ingress",
    "--protocol",
    "icmp",
    "--port",
    "8",
  );
  assertEquals(r.code, 1);
  assert(r.stderr.startsWith("error: INVALID_ARGUMENT: port_start: 8 "), r.stderr);
  r = await cli(s, "sg", "get", "nope");
  assertEquals([r.code, r.stderr.trim()], [1, 'error: NOT_FOUND: security group "nope" not found']);
  r = await cli(s, "nic", "counters", "nope");
  assertEquals([r.code, r.stderr.trim()], [1, 'error: NOT_FOUND: vNIC "nope" not found']);
});
