import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals, assertThrows } from "../assert.ts";
import { ApiError, Status } from "../../api/errors.ts";
import { MAX_GROUPS_PER_NIC, MAX_RULES_PER_GROUP, SCHEMA_VERSION, Store } from "../../api/store.ts";
import { cryptoRandom } from "../../api/allocate.ts";
import { validateNetwork, validateNicSpec, validateRule } from "../../api/validate.ts";

async function tempStore(): Promise<{ dir: string; path: string; store: Store } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "mvirt-net-store-sg-" });
  const path = `${dir}/store.db`;
  const store = Store.open(path);
  return {
    dir,
    path,
    store,
    async [Symbol.asyncDispose]() {
      store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A network "n" with two confirmed vNICs "a" and "b". */
function seed(store: Store) {
  store.createNetwork(
    validateNetwork({
      id: "",
      name: "n",
      ipv4_enabled: true,
      ipv4_subnet: "10.0.0.0/24",
      ipv6_enabled: false,
      ipv6_prefix: "",
      dns_servers: [],
      ntp_servers: [],
      is_public: false,
    }),
    "test",
  );
  const [a, b] = ["a", "b"].map((name) => {
    const rec = store.createNic(
      validateNicSpec({
        id: "",
        name,
        network_id: "n",
        mac_address: "",
        ipv4_address: "",
        ipv6_address: "",
        routed_ipv4_prefixes: [],
        routed_ipv6_prefixes: [],
      }),
      "test",
      cryptoRandom,
    );
    return store.confirmNic(rec.id);
  });
  return { a, b };
}

function tcpRule(group: string, port: number) {
  return validateRule({
    security_group_id: group,
    direction: "RULE_DIRECTION_INGRESS",
    protocol: "RULE_PROTOCOL_TCP",
    port_start: port,
    port_end: 0,
    cidr: "",
    description: "",
  });
}

function code(fn: () => unknown): string {
  const e = assertThrows(fn, ApiError) as ApiError;
  return Status[e.code];
}

Deno.test("store: a schema-1 file migrates to security groups and keeps its data", async () => {
  await using t = await tempStore();
  const { a } = seed(t.store);
  t.store.close();
  // Take the file back to schema 1, as an mvirt-net before security groups left it.
  const db = new DatabaseSync(t.path);
  db.exec(`DROP TABLE nic_security_groups; DROP TABLE security_group_rules;
           DROP TABLE security_groups; UPDATE schema_version SET version = 1`);
  db.close();
  const store = Store.open(t.path);
  try {
    assertEquals(store.schemaVersion(), SCHEMA_VERSION);
    assertEquals(store.getNic(a.id).ipv4_address, a.ipv4_address);
    const g = store.createSecurityGroup("web", "", "test");
    assertEquals(store.attachSecurityGroup("a", g.id, "test").attached, true);
  } finally {
    store.close();
  }
});

Deno.test("store: rules and attachments go with their group, vNIC and network (foreign keys)", async () => {
  await using t = await tempStore();
  const { a, b } = seed(t.store);
  const web = t.store.createSecurityGroup("web", "", "test");
  const ops = t.store.createSecurityGroup("ops", "", "test");
  t.store.addSecurityGroupRule(tcpRule("web", 80), "test");
  t.store.addSecurityGroupRule(tcpRule("ops", 22), "test");
  for (const nic of [a, b]) {
    t.store.attachSecurityGroup(nic.id, web.id, "test");
    t.store.attachSecurityGroup(nic.id, ops.id, "test");
  }
  assertEquals(t.store.getSecurityGroup(web.id).nic_count, 2);
  t.store.deleteNic(a.id, "test");
  assertEquals(t.store.getSecurityGroup(web.id).nic_count, 1);
  t.store.deleteSecurityGroup("ops", true, "test");
  const raw = new DatabaseSync(t.path);
  const count = (sql: string) => (raw.prepare(sql).get() as { c: number }).c;
  try {
    assertEquals(count("SELECT COUNT(*) AS c FROM security_group_rules"), 1, "ops' rule went");
    assertEquals(count("SELECT COUNT(*) AS c FROM nic_security_groups"), 1, "only b-web left");
    t.store.deleteNetwork(t.store.getNetworkByName("n").id, true, "test");
    assertEquals(count("SELECT COUNT(*) AS c FROM nic_security_groups"), 0);
    assertEquals(t.store.getSecurityGroup(web.id).rules.length, 1, "the group itself stays");
    // The schema refuses what validation would, also against direct SQL.
    raw.exec("PRAGMA foreign_keys = ON");
    const refused = (sql: string) => {
      try {
        raw.prepare(sql).run();
        return false;
      } catch {
        return true;
      }
    };
    const ins = (proto: string, from: number, to: number, group = web.id) =>
      `INSERT INTO security_group_rules VALUES ('${crypto.randomUUID()}', '${group}', 'INGRESS',
        '${proto}', ${from}, ${to}, '', '', 'x', 'x')`;
    assert(refused(ins("ICMP", 1, 1)), "ports only for TCP and UDP");
    assert(refused(ins("TCP", 90, 80)), "port_end >= port_start");
    assert(refused(ins("TCP", 80, 70000)), "ports <= 65535");
    assert(refused(ins("SCTP", 0, 0)), "known protocols only");
    assert(refused(ins("TCP", 80, 80)), "no duplicate rule in a group");
    assert(refused(ins("TCP", 81, 81, crypto.randomUUID())), "the group must exist");
    assert(
      refused(`INSERT INTO nic_security_groups VALUES ('${b.id}', '${web.id}', 'x')`),
      "the vNIC must exist",
    );
  } finally {
    raw.close();
  }
});

Deno.test("store: desired vNIC carries its groups in attachment order and the union of their rules", async () => {
  await using t = await tempStore();
  const { a, b } = seed(t.store);
  const web = t.store.createSecurityGroup("web", "", "test");
  const ops = t.store.createSecurityGroup("ops", "", "test");
  const http = t.store.addSecurityGroupRule(tcpRule("web", 80), "test").rule;
  const https = t.store.addSecurityGroupRule(tcpRule("web", 443), "test").rule;
  const ssh = t.store.addSecurityGroupRule(tcpRule("ops", 22), "test");
  assertEquals(ssh.nicIds, [], "no vNIC affected yet");
  t.store.attachSecurityGroup("a", "ops", "test");
  t.store.attachSecurityGroup("a", "web", "test");
  const d = t.store.desiredNic(t.store.getNic(a.id), "/s");
  assertEquals(d.securityGroupIds, [ops.id, web.id]);
  assertEquals(d.rules.map((r) => r.id), [ssh.rule.id, http.id, https.id]);
  assertEquals(d.rules[1], {
    id: http.id,
    securityGroupId: web.id,
    direction: "INGRESS",
    protocol: "TCP",
    portStart: 80,
    portEnd: 80,
    cidr: "",
  });
  assertEquals(t.store.desiredNic(t.store.getNic(b.id), "/s").rules, []);
  assertEquals(t.store.addSecurityGroupRule(tcpRule("web", 8080), "test").nicIds, [a.id]);
  assertEquals(t.store.removeSecurityGroupRule(http.id, "test").nicIds, [a.id]);
});

Deno.test("store: attachment order holds for groups attached within the same millisecond", async () => {
  await using t = await tempStore();
  const { a } = seed(t.store);
  // Created first, attached in the reverse order, as fast as the store goes: several attaches
  // share a timestamp, and their ids sort in no particular order.
  const groups = Array.from(
    { length: 12 },
    (_, i) => t.store.createSecurityGroup(`o${i}`, "", "t"),
  );
  const order = groups.toReversed();
  for (const g of order) t.store.attachSecurityGroup(a.id, g.id, "test");
  const d = t.store.desiredNic(t.store.getNic(a.id), "/s");
  assertEquals(d.securityGroupIds, order.map((g) => g.id));
});

Deno.test("store: limits refuse with RESOURCE_EXHAUSTED and change nothing", async () => {
  await using t = await tempStore();
  const { a } = seed(t.store);
  const big = t.store.createSecurityGroup("big", "", "test");
  for (let i = 1; i <= MAX_RULES_PER_GROUP; i++) {
    t.store.addSecurityGroupRule(tcpRule("big", i), "test");
  }
  const audit = t.store.audit().length;
  assertEquals(
    code(() => t.store.addSecurityGroupRule(tcpRule("big", 9999), "test")),
    "RESOURCE_EXHAUSTED",
  );
  assertEquals(t.store.getSecurityGroup(big.id).rules.length, MAX_RULES_PER_GROUP);
  for (let i = 0; i < MAX_GROUPS_PER_NIC; i++) {
    const g = t.store.createSecurityGroup(`g${i}`, "", "test");
    t.store.attachSecurityGroup(a.id, g.id, "test");
  }
  const after = t.store.audit().length;
  assert(after > audit);
  assertEquals(code(() => t.store.attachSecurityGroup(a.id, big.id, "test")), "RESOURCE_EXHAUSTED");
  assertEquals(t.store.getSecurityGroup(big.id).nic_count, 0);
  assertEquals(t.store.audit().length, after, "no audit line for a refused change");
});

Deno.test("store: pending vNICs cannot be attached and do not count", async () => {
  await using t = await tempStore();
  seed(t.store);
  const p = t.store.createNic(
    validateNicSpec({
      id: "",
      name: "p",
      network_id: "n",
      mac_address: "",
      ipv4_address: "",
      ipv6_address: "",
      routed_ipv4_prefixes: [],
      routed_ipv6_prefixes: [],
    }),
    "test",
    cryptoRandom,
  );
  t.store.createSecurityGroup("web", "", "test");
  assertEquals(code(() => t.store.attachSecurityGroup(p.id, "web", "test")), "NOT_FOUND");
  assertEquals(code(() => t.store.attachSecurityGroup("p", "web", "test")), "NOT_FOUND");
  assertEquals(t.store.getSecurityGroupByName("web").nic_count, 0);
});
