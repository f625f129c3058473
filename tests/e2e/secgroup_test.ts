/**
 * Security groups with real guests: three guests in one network, `a` gets groups attached and
 * detached while `b` and `c` talk to it. Each step checks what the guests see (an HTTP fetch
 * that arrives or times out, pings answered or not) and the counters of `a`'s vNIC.
 */

import { assert, assertEquals } from "../assert.ts";
import { dataplaneRequest, startDaemon, until } from "../helpers/daemon.ts";
import { bootGuests, type Guest, qemuAvailable } from "../helpers/guest.ts";
import { ok } from "./helpers.ts";
import { connect, type NetClient, serving } from "../api/helpers.ts";
import { sleep } from "../helpers/wait.ts";

/** Three TCG guests booting at once on a shared 2-core machine can take minutes. */
const BOOT_TIMEOUT_MS = 180_000;
/** What the guests' web servers answer with. */
const PAGE = "hello-from-a";
/** A fetch or ping the filter drops gives up after this many seconds. */
const GIVE_UP_SECS = 6;
/** Size of the file fetched through the filter in one connection. */
const BLOB_BYTES = 262144;
/** Interval of the continuous ping whose flow a rule removal must cut. */
const PING_INTERVAL_SECS = 0.2;

/** True when `g` fetches the page from `addr:port`. */
async function fetches(g: Guest, addr: string, port: number): Promise<boolean> {
  // busybox wget's own -T crashes in these guests: bound it with timeout(1) instead.
  const r = await g.run(
    `rm -f /tmp/got; timeout ${GIVE_UP_SECS} wget -q -O /tmp/got http://${addr}:${port}/page && cat /tmp/got`,
    { timeoutMs: 30_000 },
  );
  return r.code === 0 && r.output.includes(PAGE);
}

/** True when `g` gets an answer to a ping of `addr`. */
async function pings(g: Guest, addr: string): Promise<boolean> {
  const r = await g.run(`ping -c 2 -W ${GIVE_UP_SECS} ${addr}`, { timeoutMs: 30_000 });
  return r.code === 0;
}

/** Replies in the log of the background ping. */
async function pingReplies(g: Guest): Promise<number> {
  const out = await ok(g, "grep -c 'bytes from' /tmp/ping.log || true");
  return Number(out.trim());
}

/** How often the guest's link went up or down: a reconnect of the vNIC shows here. */
async function carrierChanges(g: Guest): Promise<string> {
  return (await ok(g, "cat /sys/class/net/eth0/carrier_changes")).trim();
}

function rule(api: NetClient, group: string, fields: Record<string, unknown>) {
  return api.call("AddSecurityGroupRule", { security_group_id: group, ...fields });
}

Deno.test({
  name:
    "security groups: a port let in and another not, replies of own connections, ICMP by CIDR, a removed rule cuts a live flow, attach and detach",
  ignore: !qemuAvailable(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using d = await startDaemon();
    await serving(d.grpcTarget, d.log);
    const api = connect(d.grpcTarget);
    const counters = async (nicId: string) =>
      (await dataplaneRequest(d.dataDir, { type: "GetNicCounters", id: nicId })).counters;
    try {
      const net = await api.call("CreateNetwork", {
        name: "sg",
        ipv4_enabled: true,
        ipv4_subnet: "10.66.0.0/24",
      });
      const nics = [];
      for (const name of ["a", "b", "c"]) {
        nics.push(await api.call("CreateNic", { network_id: net.id, name }));
      }
      const [na, nb] = nics;
      const guests = await bootGuests(nics.map((n) => ({
        name: `sg-${n.name}`,
        nics: [{ socketPath: n.socket_path, mac: n.mac_address }],
        timeoutMs: BOOT_TIMEOUT_MS,
      })));
      try {
        const [a, b, c] = guests;
        await Promise.all(guests.map((g) => ok(g, "mv-dhcp udhcpc eth0", 60_000)));
        // Every guest serves the page on 8080 and 8081.
        await Promise.all(guests.map((g) =>
          ok(
            g,
            `mkdir -p /tmp/www && echo ${PAGE} > /tmp/www/page && ` +
              "httpd -p 8080 -h /tmp/www && httpd -p 8081 -h /tmp/www",
          )
        ));
        // Without groups everything passes: the later refusals are the filter's doing.
        assert(await fetches(b, na.ipv4_address, 8081), "b fetches a:8081 with no group");
        assert(await pings(c, na.ipv4_address), "c pings a with no group");
        const carrier = await carrierChanges(a);

        // One ingress rule, TCP 8080: that port comes in, 8081 does not.
        const web = await api.call("CreateSecurityGroup", { name: "web" });
        const http = await rule(api, web.id, {
          direction: "RULE_DIRECTION_INGRESS",
          protocol: "RULE_PROTOCOL_TCP",
          port_start: 8080,
          port_end: 8080,
        });
        await api.call("AttachSecurityGroup", { nic_id: na.id, security_group_id: web.id });
        assert(await fetches(b, na.ipv4_address, 8080), "b fetches a:8080 through the rule");
        assert(!(await fetches(b, na.ipv4_address, 8081)), "a:8081 is not let in");
        let ca = await counters(na.id);
        assert(ca[`sg_rule_hit_${http.id}`] >= 1, `rule hit: ${JSON.stringify(ca)}`);
        assert(ca.sg_drop_ingress >= 1, `ingress drops: ${JSON.stringify(ca)}`);

        // a's own connection out: refused while no egress rule allows it; with one (in a second
        // group: the union applies) the replies come back in with no ingress rule for them.
        assert(!(await fetches(a, nb.ipv4_address, 8080)), "egress is default-deny");
        const out = await api.call("CreateSecurityGroup", { name: "out" });
        const tcpOut = await rule(api, out.id, {
          direction: "RULE_DIRECTION_EGRESS",
          protocol: "RULE_PROTOCOL_TCP",
        });
        await api.call("AttachSecurityGroup", { nic_id: na.id, security_group_id: out.id });
        assert(await fetches(a, nb.ipv4_address, 8080), "replies to a's own fetch come in");
        // A bulk transfer in: full-size segments (super-frames with offloads) pass as one flow.
        await ok(b, `head -c ${BLOB_BYTES} /dev/urandom > /tmp/www/blob`);
        await ok(a, `wget -q -O /tmp/blob http://${nb.ipv4_address}:8080/blob`, 90_000);
        assertEquals((await ok(a, "wc -c < /tmp/blob")).trim(), String(BLOB_BYTES), "blob whole");
        ca = await counters(na.id);
        assert(ca[`sg_rule_hit_${tcpOut.id}`] >= 1, `egress rule hit: ${JSON.stringify(ca)}`);
        assert(ca.sg_drop_egress >= 1, `egress drops: ${JSON.stringify(ca)}`);

        // ICMP from b's address only.
        const icmpB = await rule(api, web.id, {
          direction: "RULE_DIRECTION_INGRESS",
          protocol: "RULE_PROTOCOL_ICMP",
          cidr: `${nb.ipv4_address}/32`,
        });
        assert(await pings(b, na.ipv4_address), "b's pings are allowed by its CIDR");
        assert(!(await pings(c, na.ipv4_address)), "c's pings are not");

        // A continuous ping from b is one tracked flow; removing the rule that allowed it
        // must stop it (the flow is re-checked, not left to run on its conntrack entry).
        const pingPid = (await ok(
          b,
          `ping -i ${PING_INTERVAL_SECS} -c 150 ${na.ipv4_address} </dev/null >/tmp/ping.log 2>&1 & echo $!`,
        )).trim();
        await until(async () => (await pingReplies(b)) >= 5, 30_000, "the ping to run");
        await api.call("RemoveSecurityGroupRule", { rule_id: icmpB.id });
        const atRemoval = await pingReplies(b);
        await sleep(3_000);
        const later = await pingReplies(b);
        // A reply or two may have been on their way (or not yet logged) when the call
        // returned; a flow left running would add about fifteen in three seconds.
        assert(
          later - atRemoval <= 2,
          `the ping stopped: ${atRemoval} replies at removal, ${later} three seconds later`,
        );
        ca = await counters(na.id);
        assert((ca.sg_conntrack_revoked ?? 0) >= 1, `flow revoked: ${JSON.stringify(ca)}`);
        await b.run(`kill ${pingPid}`);

        // Detach both: everything passes again; attach one again: refused again. The guest's
        // link never bounced, so nothing reconnected.
        await api.call("DetachSecurityGroup", { nic_id: na.id, security_group_id: web.id });
        await api.call("DetachSecurityGroup", { nic_id: na.id, security_group_id: out.id });
        assert(await fetches(b, na.ipv4_address, 8081), "8081 open with no group");
        assert(await pings(c, na.ipv4_address), "c pings a with no group");
        await api.call("AttachSecurityGroup", { nic_id: na.id, security_group_id: web.id });
        assert(!(await fetches(b, na.ipv4_address, 8081)), "8081 refused again");
        assert(!(await pings(c, na.ipv4_address)), "c refused again");
        assert(await fetches(b, na.ipv4_address, 8080), "8080 still open");
        assertEquals(await carrierChanges(a), carrier, "a's link never went down");
        assertEquals((await api.call("GetNic", { id: na.id })).state, "NIC_STATE_ACTIVE");
        // The other guests were never filtered.
        assert(await fetches(c, nb.ipv4_address, 8081), "b and c unaffected");
      } finally {
        await Promise.all(guests.map((g) => g.close()));
      }
    } finally {
      api.close();
    }
  },
});
