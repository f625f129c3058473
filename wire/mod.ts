/**
 * The wire layer: checked views over bytes and plain reprs with `parse`/`emit` for every
 * protocol the gateway speaks. Pure, no I/O; malformed input yields a {@link WireError}.
 *
 * @example
 * ```ts
 * import { parseEthernet, WireError } from "./wire/mod.ts";
 * const eth = parseEthernet(frame);
 * if (!(eth instanceof WireError)) console.log(eth.ethertype);
 * ```
 * @module
 */

export * from "./error.ts";
export * from "./addr.ts";
export * from "./checksum.ts";
export * from "./ethernet.ts";
export * from "./arp.ts";
export * from "./ipv4.ts";
export * from "./ipv6.ts";
export * from "./udp.ts";
export * from "./icmpv4.ts";
export * from "./icmpv6.ts";
export * from "./dhcpv4.ts";
export * from "./dhcpv6.ts";
