import { assert, assertEquals } from "../assert.ts";
import { connectDiag, expectStatus, startTestApi, type TestApi } from "./helpers.ts";
import type { DesiredNic, Request } from "../../daemon/protocol.ts";
import type { AddSecurityGroupRuleRequest, Nic, SecurityGroup } from "../../api/proto_types.ts";

async function setup(t: TestApi): Promise<{ a: Nic; b: Nic }> {
  await t.client.call("CreateNetwork", {
    name: "blue",
    ipv4_enabled: true,
    ipv4_subnet: "10.20.0.0/24",
    ipv6_enabled: true,
    ipv6_prefix: "fd00:20::/64",
  });
  const a = await t.client.call("CreateNic", { network_id: "blue", name: "a" });
  const b = await t.client.call("CreateNic", { network_id: "blue", name: "b" });
  return { a, b };
}

const SSH: Partial<AddSecurityGroupRuleRequest> = {
  direction: "RULE_DIRECTION_INGRESS",
  protocol: "RULE_PROTOCOL_TCP",
  port_start: 22,
  port_end: 22,
};

/** What a client can see of security groups and vNICs, the audit log and the pushes. */
async function snapshot(t: TestApi): Promise<string> {
  const groups = await t.client.call("ListSecurityGroups", {});
  const nics = await t.client.call("ListNics", {});
  return JSON.stringify([groups, nics, t.store.audit().length, t.dataplane.requests.length]);
}

/** UpsertNic requests the dataplane received since request number `from`. */
function upserts(t: TestApi, from: number): DesiredNic[] {
  return t.dataplane.requests.slice(from).flatMap((r: Request) =>
    r.type === "UpsertNic" ? [r.nic] : []
  );
}

Deno.test("security groups: create, get by id and name, list, delete, audit", async () => {
  await using t = await startTestApi();
  const web = await t.client.call("CreateSecurityGroup", {
    name: "web",
    description: "public web servers",
  });
  assert(/^[0-9a-f-]{36}$/.test(web.id), web.id);
  assertEquals(
    [web.name, web.description, web.rules, web.nic_count],
    ["web", "public web servers", [], 0],
  );
  assert(!Number.isNaN(Date.parse(web.created_at)) && web.updated_at === web.created_at);
  assertEquals(await t.client.call("GetSecurityGroup", { id: web.id }), web);
  assertEquals(await t.client.call("GetSecurityGroup", { id: web.id.toUpperCase() }), web);
  assertEquals(await t.client.call("GetSecurityGroup", { name: "web" }), web);
  const db = await t.client.call("CreateSecurityGroup", { name: "db" });
  assertEquals(db.description, "");
  assertEquals(
    (await t.client.call("ListSecurityGroups", {})).security_groups.map((g) => g.name),
    ["db", "web"],
    "listed by name",
  );
  assertEquals(await t.client.call("DeleteSecurityGroup", { id: db.id }), {
    deleted: true,
    nics_detached: 0,
  });
  assertEquals(await t.client.call("DeleteSecurityGroup", { id: "web" }), {
    deleted: true,
    nics_detached: 0,
  });
  assertEquals((await t.client.call("ListSecurityGroups", {})).security_groups, []);
  const audit = t.store.audit({ objectId: web.id });
  assertEquals(audit.map((a) => [a.action, a.objectKind]), [
    ["security_group.create", "security_group"],
    ["security_group.delete", "security_group"],
  ]);
  assert(audit[0].actor.includes("127.0.0.1"), "audit names the peer");
  assertEquals((audit[1].detail.security_group as SecurityGroup).name, "web");
});

Deno.test("security group errors carry the right status, name the field, change nothing", async () => {
  await using t = await startTestApi();
  const web = await t.client.call("CreateSecurityGroup", { name: "web" });
  const before = await snapshot(t);
  await expectStatus(
    t.client.fail("CreateSecurityGroup", { name: "web" }),
    "ALREADY_EXISTS",
    "name",
    '"web"',
  );
  await expectStatus(t.client.fail("CreateSecurityGroup", {}), "INVALID_ARGUMENT", "name");
  await expectStatus(
    t.client.fail("CreateSecurityGroup", { name: "bad name" }),
    "INVALID_ARGUMENT",
    "name",
    "bad name",
  );
  await expectStatus(
    t.client.fail("CreateSecurityGroup", { name: crypto.randomUUID() }),
    "INVALID_ARGUMENT",
    "UUID",
  );
  await expectStatus(
    t.client.fail("CreateSecurityGroup", { name: "x", description: "d".repeat(256) }),
    "INVALID_ARGUMENT",
    "description",
    "256 characters",
  );
  await expectStatus(
    t.client.fail("CreateSecurityGroup", { name: "x", description: "two\nlines" }),
    "INVALID_ARGUMENT",
    "description",
    "control characters",
  );
  await expectStatus(t.client.fail("GetSecurityGroup", {}), "INVALID_ARGUMENT", "identifier");
  await expectStatus(
    t.client.fail("GetSecurityGroup", { id: "zzz" }),
    "INVALID_ARGUMENT",
    "id",
    "zzz",
  );
  const ghost = crypto.randomUUID();
  await expectStatus(t.client.fail("GetSecurityGroup", { id: ghost }), "NOT_FOUND", ghost);
  await expectStatus(t.client.fail("GetSecurityGroup", { name: "nope" }), "NOT_FOUND", "nope");
  await expectStatus(t.client.fail("DeleteSecurityGroup", { id: ghost }), "NOT_FOUND", ghost);
  await expectStatus(t.client.fail("DeleteSecurityGroup", { id: "" }), "INVALID_ARGUMENT", "id");
  assertEquals(await snapshot(t), before);
  assertEquals((await t.client.call("GetSecurityGroup", { id: web.id })).name, "web");
});

Deno.test("rules: normalised, validated field by field, nothing stored on refusal", async () => {
  await using t = await startTestApi();
  const web = await t.client.call("CreateSecurityGroup", { name: "web" });
  const ssh = await t.client.call("AddSecurityGroupRule", {
    ...SSH,
    security_group_id: web.id,
    cidr: "192.168.1.0/24",
    description: "admins",
  });
  assertEquals(
    [ssh.security_group_id, ssh.direction, ssh.protocol, ssh.port_start, ssh.port_end, ssh.cidr],
    [web.id, "RULE_DIRECTION_INGRESS", "RULE_PROTOCOL_TCP", 22, 22, "192.168.1.0/24"],
  );
  assertEquals(ssh.description, "admins");
  // port_end 0 with a port_start: that one port. A bare address: that one host. IPv6 text is
  // normalised.
  const dns = await t.client.call("AddSecurityGroupRule", {
    security_group_id: "web",
    direction: "RULE_DIRECTION_EGRESS",
    protocol: "RULE_PROTOCOL_UDP",
    port_start: 53,
    cidr: "FD00:0:0::53",
  });
  assertEquals([dns.port_start, dns.port_end, dns.cidr], [53, 53, "fd00::53/128"]);
  const range = await t.client.call("AddSecurityGroupRule", {
    security_group_id: "web",
    direction: "RULE_DIRECTION_INGRESS",
    protocol: "RULE_PROTOCOL_UDP",
    port_start: 60000,
    port_end: 61000,
  });
  assertEquals([range.port_start, range.port_end, range.cidr], [60000, 61000, ""]);
  const ping = await t.client.call("AddSecurityGroupRule", {
    security_group_id: web.id,
    direction: "RULE_DIRECTION_INGRESS",
    protocol: "RULE_PROTOCOL_ICMP",
    cidr: "10.20.0.5",
  });
  assertEquals([ping.port_start, ping.port_end, ping.cidr], [0, 0, "10.20.0.5/32"]);
  const ping6 = await t.client.call("AddSecurityGroupRule", {
    security_group_id: web.id,
    direction: "RULE_DIRECTION_INGRESS",
    protocol: "RULE_PROTOCOL_ICMPV6",
    cidr: "fd00:20::/64",
  });
  const all = await t.client.call("AddSecurityGroupRule", {
    security_group_id: web.id,
    direction: "RULE_DIRECTION_EGRESS",
    protocol: "RULE_PROTOCOL_ALL",
  });
  const got = await t.client.call("GetSecurityGroup", { id: web.id });
  assertEquals(got.rules, [ssh, dns, range, ping, ping6, all], "rules in the order added");
  assert(got.updated_at >= web.updated_at && got.updated_at >= all.created_at, got.updated_at);

  const before = await snapshot(t);
  const add = (req: Partial<AddSecurityGroupRuleRequest>) =>
    t.client.fail("AddSecurityGroupRule", { security_group_id: web.id, ...SSH, ...req });
  await expectStatus(add({ security_group_id: "nope" }), "NOT_FOUND", "nope");
  await expectStatus(add({ security_group_id: "" }), "INVALID_ARGUMENT", "security_group_id");
  await expectStatus(
    add({ direction: "RULE_DIRECTION_UNSPECIFIED" }),
    "INVALID_ARGUMENT",
    "direction",
    "RULE_DIRECTION_UNSPECIFIED",
  );
  await expectStatus(
    add({ protocol: "RULE_PROTOCOL_UNSPECIFIED" }),
    "INVALID_ARGUMENT",
    "protocol",
    "RULE_PROTOCOL_UNSPECIFIED",
  );
  await expectStatus(
    add({ port_start: 70000, port_end: 70000 }),
    "INVALID_ARGUMENT",
    "port_start",
    "70000",
  );
  await expectStatus(add({ port_start: 80, port_end: 65536 }), "INVALID_ARGUMENT", "port_end");
  await expectStatus(
    add({ port_start: 80, port_end: 79 }),
    "INVALID_ARGUMENT",
    "port_end",
    "79",
    "below port_start 80",
  );
  await expectStatus(add({ port_start: 0, port_end: 80 }), "INVALID_ARGUMENT", "port_start");
  await expectStatus(
    add({ protocol: "RULE_PROTOCOL_ICMP", port_start: 8, port_end: 0 }),
    "INVALID_ARGUMENT",
    "port_start",
    "TCP and UDP",
  );
  await expectStatus(
    add({ protocol: "RULE_PROTOCOL_ALL", port_start: 0, port_end: 443 }),
    "INVALID_ARGUMENT",
    "port_end",
    "443",
  );
  await expectStatus(
    add({ protocol: "RULE_PROTOCOL_ICMP", port_start: 0, port_end: 0, cidr: "fd00::/64" }),
    "INVALID_ARGUMENT",
    "cidr",
    "fd00::/64",
    "IPv4 only",
  );
  await expectStatus(
    add({ protocol: "RULE_PROTOCOL_ICMPV6", port_start: 0, port_end: 0, cidr: "10.0.0.0/8" }),
    "INVALID_ARGUMENT",
    "cidr",
    "IPv6 only",
  );
  await expectStatus(add({ cidr: "10.0.0.1/24" }), "INVALID_ARGUMENT", "cidr", "host bits");
  await expectStatus(add({ cidr: "10.0.0.0/33" }), "INVALID_ARGUMENT", "cidr", "10.0.0.0/33");
  await expectStatus(add({ cidr: "banana" }), "INVALID_ARGUMENT", "cidr", "banana");
  await expectStatus(
    add({ description: "x".repeat(300) }),
    "INVALID_ARGUMENT",
    "description",
  );
  await expectStatus(
    add({ cidr: "192.168.1.0/24" }),
    "ALREADY_EXISTS",
    ssh.id,
    "same direction, protocol, ports and cidr",
  );
  await expectStatus(
    t.client.fail("RemoveSecurityGroupRule", { rule_id: "r1" }),
    "INVALID_ARGUMENT",
    "rule_id",
    "r1",
  );
  const ghost = crypto.randomUUID();
  await expectStatus(
    t.client.fail("RemoveSecurityGroupRule", { rule_id: ghost }),
    "NOT_FOUND",
    ghost,
  );
  assertEquals(await snapshot(t), before);

  assertEquals(await t.client.call("RemoveSecurityGroupRule", { rule_id: dns.id }), {
    deleted: true,
  });
  await expectStatus(
    t.client.fail("RemoveSecurityGroupRule", { rule_id: dns.id }),
    "NOT_FOUND",
    dns.id,
  );
  assertEquals(
    (await t.client.call("GetSecurityGroup", { id: web.id })).rules.map((r) => r.id),
    [ssh.id, range.id, ping.id, ping6.id, all.id],
  );
  const actions = t.store.audit({ objectId: web.id }).map((a) => a.action);
  assertEquals(actions, [
    "security_group.create",
    ...Array(6).fill("security_group.rule.add"),
    "security_group.rule.remove",
  ]);
  assertEquals(
    t.store.audit({ action: "security_group.rule.remove" })[0].detail.rule,
    dns,
    "the audit keeps the removed rule",
  );
});

Deno.test("attach and detach: nic_count, idempotence, every change pushed with the union of rules", async () => {
  await using t = await startTestApi();
  const { a, b } = await setup(t);
  const web = await t.client.call("CreateSecurityGroup", { name: "web" });
  const ops = await t.client.call("CreateSecurityGroup", { name: "ops" });
  const http = await t.client.call("AddSecurityGroupRule", {
    security_group_id: web.id,
    direction: "RULE_DIRECTION_INGRESS",
    protocol: "RULE_PROTOCOL_TCP",
    port_start: 80,
  });
  const ssh = await t.client.call("AddSecurityGroupRule", { ...SSH, security_group_id: ops.id });

  let mark = t.dataplane.requests.length;
  assertEquals(
    await t.client.call("AttachSecurityGroup", { nic_id: a.id, security_group_id: web.id }),
    { attached: true },
  );
  let pushed = upserts(t, mark);
  assertEquals(pushed.length, 1, "one push: the vNIC that changed");
  assertEquals(pushed[0].id, a.id);
  assertEquals(pushed[0].securityGroupIds, [web.id]);
  assertEquals(pushed[0].rules, [{
    id: http.id,
    securityGroupId: web.id,
    direction: "INGRESS",
    protocol: "TCP",
    portStart: 80,
    portEnd: 80,
    cidr: "",
  }]);
  assertEquals(pushed[0].ipv4, a.ipv4_address, "the push is the whole vNIC");

  // By name on both sides; already attached: OK, attached=false, nothing pushed or audited.
  mark = t.dataplane.requests.length;
  const audited = t.store.audit().length;
  assertEquals(
    await t.client.call("AttachSecurityGroup", { nic_id: "a", security_group_id: "web" }),
    { attached: false },
  );
  assertEquals(upserts(t, mark), []);
  assertEquals(t.store.audit().length, audited);

  await t.client.call("AttachSecurityGroup", { nic_id: "a", security_group_id: "ops" });
  await t.client.call("AttachSecurityGroup", { nic_id: b.id, security_group_id: ops.id });
  assertEquals((await t.client.call("GetSecurityGroup", { id: web.id })).nic_count, 1);
  assertEquals((await t.client.call("GetSecurityGroup", { id: ops.id })).nic_count, 2);
  const desired = t.store.desiredState((id) => id, 1500).nics.find((n) => n.id === a.id)!;
  assertEquals(desired.securityGroupIds, [web.id, ops.id], "in attachment order");
  assertEquals(desired.rules.map((r) => r.id), [http.id, ssh.id], "the union of both groups");

  // A rule added to ops reaches both of its vNICs, and only them.
  mark = t.dataplane.requests.length;
  const dns = await t.client.call("AddSecurityGroupRule", {
    security_group_id: "ops",
    direction: "RULE_DIRECTION_EGRESS",
    protocol: "RULE_PROTOCOL_UDP",
    port_start: 53,
  });
  pushed = upserts(t, mark);
  assertEquals(pushed.map((n) => n.id).sort(), [a.id, b.id].sort());
  assertEquals(pushed.find((n) => n.id === a.id)!.rules.map((r) => r.id), [
    http.id,
    ssh.id,
    dns.id,
  ]);
  assertEquals(pushed.find((n) => n.id === b.id)!.rules.map((r) => r.id), [ssh.id, dns.id]);

  mark = t.dataplane.requests.length;
  await t.client.call("RemoveSecurityGroupRule", { rule_id: ssh.id });
  pushed = upserts(t, mark);
  assertEquals(pushed.length, 2);
  assert(pushed.every((n) => !n.rules.some((r) => r.id === ssh.id)), "removed rule gone");

  mark = t.dataplane.requests.length;
  assertEquals(
    await t.client.call("DetachSecurityGroup", { nic_id: a.id, security_group_id: web.id }),
    { detached: true },
  );
  pushed = upserts(t, mark);
  assertEquals(pushed.map((n) => [n.id, n.securityGroupIds]), [[a.id, [ops.id]]]);
  assertEquals(pushed[0].rules.map((r) => r.id), [dns.id]);
  mark = t.dataplane.requests.length;
  assertEquals(
    await t.client.call("DetachSecurityGroup", { nic_id: "a", security_group_id: "web" }),
    { detached: false },
  );
  assertEquals(upserts(t, mark), [], "nothing to push");
  await t.client.call("DetachSecurityGroup", { nic_id: "a", security_group_id: "ops" });
  const none = upserts(t, mark);
  assertEquals([none[0].securityGroupIds, none[0].rules], [[], []], "no group: no filtering");

  // The full sync on (re)connect carries the groups and rules too.
  mark = t.dataplane.requests.length;
  await t.link.resync();
  const sync = t.dataplane.requests.slice(mark).find((r) => r.type === "SyncState");
  assert(sync?.type === "SyncState");
  const bSynced = sync.nics.find((n) => n.id === b.id)!;
  assertEquals([bSynced.securityGroupIds, bSynced.rules.map((r) => r.id)], [[ops.id], [dns.id]]);

  const before = await snapshot(t);
  const ghost = crypto.randomUUID();
  for (const rpc of ["AttachSecurityGroup", "DetachSecurityGroup"] as const) {
    await expectStatus(
      t.client.fail(rpc, { nic_id: ghost, security_group_id: web.id }),
      "NOT_FOUND",
      "vNIC",
      ghost,
    );
    await expectStatus(
      t.client.fail(rpc, { nic_id: "nope", security_group_id: web.id }),
      "NOT_FOUND",
      "nope",
    );
    await expectStatus(
      t.client.fail(rpc, { nic_id: a.id, security_group_id: ghost }),
      "NOT_FOUND",
      "security group",
      ghost,
    );
    await expectStatus(
      t.client.fail(rpc, { nic_id: "", security_group_id: web.id }),
      "INVALID_ARGUMENT",
      "nic_id",
    );
    await expectStatus(
      t.client.fail(rpc, { nic_id: a.id, security_group_id: "" }),
      "INVALID_ARGUMENT",
      "security_group_id",
    );
  }
  assertEquals(await snapshot(t), before);
  const actions = t.store.audit({ objectId: web.id }).map((x) => x.action);
  assertEquals(actions, [
    "security_group.create",
    "security_group.rule.add",
    "security_group.attach",
    "security_group.detach",
  ]);
  assertEquals(t.store.audit({ action: "security_group.attach" })[0].detail, { nic_id: a.id });
});

Deno.test("DeleteSecurityGroup: refused while attached, force detaches and pushes", async () => {
  await using t = await startTestApi();
  const { a, b } = await setup(t);
  const web = await t.client.call("CreateSecurityGroup", { name: "web" });
  const other = await t.client.call("CreateSecurityGroup", { name: "other" });
  await t.client.call("AddSecurityGroupRule", { ...SSH, security_group_id: web.id });
  const keep = await t.client.call("AddSecurityGroupRule", { ...SSH, security_group_id: "other" });
  for (const nic of [a, b]) {
    await t.client.call("AttachSecurityGroup", { nic_id: nic.id, security_group_id: web.id });
  }
  await t.client.call("AttachSecurityGroup", { nic_id: a.id, security_group_id: other.id });
  const before = await snapshot(t);
  await expectStatus(
    t.client.fail("DeleteSecurityGroup", { id: web.id }),
    "FAILED_PRECONDITION",
    "web",
    "nic_count 2",
    "force",
  );
  assertEquals(await snapshot(t), before, "refused: nothing changed");

  const mark = t.dataplane.requests.length;
  assertEquals(await t.client.call("DeleteSecurityGroup", { id: web.id, force: true }), {
    deleted: true,
    nics_detached: 2,
  });
  await expectStatus(t.client.fail("GetSecurityGroup", { id: web.id }), "NOT_FOUND");
  const pushed = upserts(t, mark);
  assertEquals(pushed.map((n) => n.id).sort(), [a.id, b.id].sort());
  const pa = pushed.find((n) => n.id === a.id)!;
  assertEquals([pa.securityGroupIds, pa.rules.map((r) => r.id)], [[other.id], [keep.id]]);
  const pb = pushed.find((n) => n.id === b.id)!;
  assertEquals([pb.securityGroupIds, pb.rules], [[], []]);
  assertEquals((await t.client.call("GetSecurityGroup", { id: other.id })).nic_count, 1);
  const del = t.store.audit({ action: "security_group.delete" })[0];
  assertEquals(del.detail.force, true);
  assertEquals((del.detail.nics_detached as string[]).sort(), [a.id, b.id].sort());
  // The name is free again.
  await t.client.call("CreateSecurityGroup", { name: "web" });
});

Deno.test("attachments go with their vNIC and with its network", async () => {
  await using t = await startTestApi();
  const { a, b } = await setup(t);
  const web = await t.client.call("CreateSecurityGroup", { name: "web" });
  for (const nic of [a, b]) {
    await t.client.call("AttachSecurityGroup", { nic_id: nic.id, security_group_id: "web" });
  }
  assertEquals((await t.client.call("GetSecurityGroup", { id: web.id })).nic_count, 2);
  await t.client.call("DeleteNic", { id: a.id });
  assertEquals((await t.client.call("GetSecurityGroup", { id: web.id })).nic_count, 1);
  assertEquals(
    t.store.audit({ objectId: a.id, action: "nic.delete" })[0].detail.security_groups_detached,
    [web.id],
  );
  await t.client.call("DeleteNetwork", {
    id: (await t.client.call("GetNetwork", { name: "blue" })).id,
    force: true,
  });
  assertEquals((await t.client.call("GetSecurityGroup", { id: web.id })).nic_count, 0);
  // Nothing attached any more: deleting needs no force.
  assertEquals(await t.client.call("DeleteSecurityGroup", { id: web.id }), {
    deleted: true,
    nics_detached: 0,
  });
});

Deno.test("Diagnostics: counters of a vNIC and per-rule hits summed over the group's vNICs", async () => {
  await using t = await startTestApi();
  const diag = connectDiag(t.target);
  try {
    const { a, b } = await setup(t);
    const web = await t.client.call("CreateSecurityGroup", { name: "web" });
    const http = await t.client.call("AddSecurityGroupRule", {
      ...SSH,
      port_start: 80,
      port_end: 80,
      security_group_id: web.id,
    });
    const ssh = await t.client.call("AddSecurityGroupRule", { ...SSH, security_group_id: web.id });
    for (const nic of [a, b]) {
      await t.client.call("AttachSecurityGroup", { nic_id: nic.id, security_group_id: web.id });
    }
    t.dataplane.setCounters(a.id, {
      rx_packets: 10,
      [`sg_rule_hit_${http.id}`]: 7,
      sg_drop_ingress: 3,
      sg_drop_egress: 1,
    });
    t.dataplane.setCounters(b.id, { [`sg_rule_hit_${http.id}`]: 5, [`sg_rule_hit_${ssh.id}`]: 2 });

    const c = await diag.call("GetNicCounters", { nic: "a" });
    assertEquals(c.nic_id, a.id);
    assertEquals(c.counters, [
      { name: "rx_packets", value: 10 },
      { name: "sg_drop_egress", value: 1 },
      { name: "sg_drop_ingress", value: 3 },
      { name: `sg_rule_hit_${http.id}`, value: 7 },
    ]);
    assertEquals((await diag.call("GetNicCounters", { nic: b.id })).counters.length, 2);
    await expectStatus(diag.fail("GetNicCounters", { nic: "nope" }), "NOT_FOUND", "nope");
    await expectStatus(diag.fail("GetNicCounters", { nic: "" }), "INVALID_ARGUMENT", "nic");

    assertEquals(await diag.call("GetSecurityGroupHits", { security_group: "web" }), {
      security_group_id: web.id,
      rules: [{ rule_id: http.id, hits: 12 }, { rule_id: ssh.id, hits: 2 }],
      nics_counted: 2,
      nics_missing: [],
    });
    await expectStatus(
      diag.fail("GetSecurityGroupHits", { security_group: "nope" }),
      "NOT_FOUND",
      "nope",
    );

    // A vNIC the dataplane does not run (yet): the others still count.
    await t.link.removeNic(b.id);
    assertEquals(await diag.call("GetSecurityGroupHits", { security_group: web.id }), {
      security_group_id: web.id,
      rules: [{ rule_id: http.id, hits: 7 }, { rule_id: ssh.id, hits: 0 }],
      nics_counted: 1,
      nics_missing: [b.id],
    });
    await expectStatus(diag.fail("GetNicCounters", { nic: "b" }), "NOT_FOUND", b.id);

    await t.link.stop();
    await expectStatus(diag.fail("GetNicCounters", { nic: "a" }), "UNAVAILABLE", "dataplane");
    await expectStatus(
      diag.fail("GetSecurityGroupHits", { security_group: "web" }),
      "UNAVAILABLE",
      "dataplane",
    );
  } finally {
    diag.close();
  }
});

Deno.test("rule changes while the dataplane is away are stored and applied by the next sync", async () => {
  await using t = await startTestApi();
  const { a } = await setup(t);
  await t.client.call("CreateSecurityGroup", { name: "web" });
  await t.client.call("AttachSecurityGroup", { nic_id: "a", security_group_id: "web" });
  await t.link.stop();
  const rule = await t.client.call("AddSecurityGroupRule", { ...SSH, security_group_id: "web" });
  const g = await t.client.call("GetSecurityGroup", { name: "web" });
  assertEquals(g.rules.map((r) => r.id), [rule.id], "stored although not pushed");
  const synced = t.store.desiredState((id) => id, 1500).nics.find((n) => n.id === a.id)!;
  assertEquals(synced.rules.map((r) => r.id), [rule.id], "what the next SyncState carries");
});

Deno.test("concurrent rule changes: the dataplane's last push is the final rule set", async () => {
  await using t = await startTestApi();
  const { a } = await setup(t);
  await t.client.call("CreateSecurityGroup", { name: "web" });
  await t.client.call("AttachSecurityGroup", { nic_id: "a", security_group_id: "web" });
  const added = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      t.client.call("AddSecurityGroupRule", {
        ...SSH,
        security_group_id: "web",
        port_start: 1000 + i,
        port_end: 0,
      })),
  );
  const removed = added.filter((_, i) => i % 3 === 0);
  await Promise.all(
    removed.map((r) => t.client.call("RemoveSecurityGroupRule", { rule_id: r.id })),
  );
  const final = (await t.client.call("GetSecurityGroup", { name: "web" })).rules.map((r) => r.id);
  assertEquals(final.length, 20 - removed.length);
  const last = upserts(t, 0).filter((n) => n.id === a.id).at(-1)!;
  assertEquals(last.rules.map((r) => r.id), final);
});
