/**
 * Security groups in the data path: allow rules compiled into a matcher, a per-vNIC connection
 * table, and the filter that the vNIC actor runs on every frame to and from its VM while at
 * least one group is attached. Pure: no FFI, no Workers.
 *
 * @example
 * ```ts
 * import { SecurityFilter } from "./secgroup/mod.ts";
 * const sg = new SecurityFilter();
 * sg.update(nic.securityGroupIds, nic.rules);
 * if (sg.enabled) {
 *   const v = sg.filter(frame, "ingress");
 *   if (!v.pass) console.log("dropped:", v.reason);
 * }
 * ```
 * @module
 */

export * from "./rules.ts";
export * from "./conntrack.ts";
export * from "./packet.ts";
export * from "./filter.ts";
