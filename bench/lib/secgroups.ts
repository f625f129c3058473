/**
 * The security-group cost benchmark: the VM-to-VM loop with a security group attached to
 * both vNICs. A vNIC with a group attached is default-deny both ways, and the loop's frames
 * are not replies of each other (UDP 4000 -> 4001 both ways), so each vNIC needs an ingress
 * and an egress rule that match: "1 rule" is one matching rule per direction; "50 rules"
 * is 48 rules that never match the loop (TCP ports) followed by those two.
 * @module
 */

import type { OurDaemon } from "./daemon.ts";
import { MvirtNetBackend } from "./ours.ts";

/** The loop generator's UDP ports (scripts/bench/gen.c). */
const GEN_UDP_PORTS = [4000, 4001];
/** The loop's addresses. */
const LOOP_CIDR = "10.0.0.0/24";

/** A rule request of the API. */
interface RuleSpec {
  direction: "RULE_DIRECTION_INGRESS" | "RULE_DIRECTION_EGRESS";
  protocol: "RULE_PROTOCOL_TCP" | "RULE_PROTOCOL_UDP";
  port_start: number;
  port_end: number;
  cidr: string;
}

/** The rules of a group with `total` rules (at least 2: the two that match come last). */
export function loopRules(total: number): RuleSpec[] {
  if (total < 2) throw new Error(`rules: ${total}; the loop needs one rule per direction (2)`);
  const rules: RuleSpec[] = [];
  for (let i = 0; i < total - 2; i++) {
    const port = 10_000 + i;
    rules.push({
      direction: i % 2 ? "RULE_DIRECTION_EGRESS" : "RULE_DIRECTION_INGRESS",
      protocol: "RULE_PROTOCOL_TCP",
      port_start: port,
      port_end: port,
      cidr: LOOP_CIDR,
    });
  }
  for (const direction of ["RULE_DIRECTION_INGRESS", "RULE_DIRECTION_EGRESS"] as const) {
    rules.push({
      direction,
      protocol: "RULE_PROTOCOL_UDP",
      port_start: Math.min(...GEN_UDP_PORTS),
      port_end: Math.max(...GEN_UDP_PORTS),
      cidr: LOOP_CIDR,
    });
  }
  return rules;
}

/**
 * Whether this daemon implements the security-group RPCs: null if it does, else why not
 * (the RPC's error, e.g. UNIMPLEMENTED).
 */
export async function securityGroupsMissing(d: OurDaemon): Promise<string | null> {
  try {
    await d.client.call("ListSecurityGroups", {});
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Our backend with a group of `total` rules attached to both vNICs (0: none attached). */
export function backendWithRules(total: number): MvirtNetBackend {
  if (total === 0) return new MvirtNetBackend();
  return new MvirtNetBackend(async (d, nicIds) => {
    const sg = await d.client.call("CreateSecurityGroup", {
      name: "bench-loop",
      description: `the loop benchmark, ${total} rules`,
    });
    for (const r of loopRules(total)) {
      await d.client.call("AddSecurityGroupRule", { security_group_id: sg.id, ...r });
    }
    for (const nic_id of nicIds) {
      await d.client.call("AttachSecurityGroup", { nic_id, security_group_id: sg.id });
    }
  }, ruleCommands(total));
}

/** The API calls of that setup (gRPC, `mvirt.net.NetService`), for the report. */
export function ruleCommands(total: number): string[] {
  if (total === 0) return [];
  return [
    'CreateSecurityGroup{name: "bench-loop"}',
    ...loopRules(total).map((r) =>
      `AddSecurityGroupRule{direction: ${r.direction}, protocol: ${r.protocol}, port_start: ${r.port_start}, port_end: ${r.port_end}, cidr: "${r.cidr}"}`
    ),
    "AttachSecurityGroup{nic_id: <guest-a>, security_group_id: <bench-loop>}   # and guest-b",
  ];
}
