/**
 * DHCPv6 client/server messages (RFC 8415 section 8) with the options the gateway reads or
 * writes: CLIENTID, SERVERID, IA_NA with IAADDR, ORO, PREFERENCE, ELAPSED_TIME, STATUS_CODE,
 * RAPID_COMMIT, DNS_SERVERS (RFC 3646) and NTP_SERVER with its suboptions (RFC 5908). Relay
 * messages are `unsupported`: the gateway sits on the guest's link, there is no relay.
 * Unknown options inside IA_NA and IAADDR are skipped; unknown top-level options are kept.
 * @module
 */

import { IPV6_LEN, type Ipv6Addr, MAC_LEN, type MacAddr } from "./addr.ts";
import { read16, read32, write16, write32 } from "./bytes.ts";
import { WireError } from "./error.ts";

/** UDP port of DHCPv6 clients. */
export const DHCPV6_CLIENT_PORT = 546;
/** UDP port of DHCPv6 servers and relays. */
export const DHCPV6_SERVER_PORT = 547;

/** Message types (RFC 8415 section 7.3). */
export const Dhcpv6MessageType = {
  SOLICIT: 1,
  ADVERTISE: 2,
  REQUEST: 3,
  CONFIRM: 4,
  RENEW: 5,
  REBIND: 6,
  REPLY: 7,
  RELEASE: 8,
  DECLINE: 9,
  RECONFIGURE: 10,
  INFORMATION_REQUEST: 11,
} as const;

/** Option codes. */
export const Dhcpv6Option = {
  CLIENTID: 1,
  SERVERID: 2,
  IA_NA: 3,
  IAADDR: 5,
  ORO: 6,
  PREFERENCE: 7,
  ELAPSED_TIME: 8,
  STATUS_CODE: 13,
  RAPID_COMMIT: 14,
  DNS_SERVERS: 23,
  NTP_SERVER: 56,
} as const;

/** Status codes (RFC 8415 section 21.13). */
export const Dhcpv6Status = {
  SUCCESS: 0,
  UNSPEC_FAIL: 1,
  NO_ADDRS_AVAIL: 2,
  NO_BINDING: 3,
  NOT_ON_LINK: 4,
  USE_MULTICAST: 5,
} as const;

/** NTP_SERVER suboptions (RFC 5908 section 4). */
export const NtpSuboption = { ADDRESS: 1, MULTICAST: 2, FQDN: 3 } as const;

/** DUID type DUID-LL (RFC 8415 section 11.4). */
export const DUID_LL = 3;
/** Hardware type Ethernet, as used in DUIDs. */
export const DUID_HW_ETHERNET = 1;

const HEADER_LEN = 4;
const OPT_HEADER_LEN = 4;
const IA_NA_FIXED_LEN = 12;
const IAADDR_FIXED_LEN = 24;
const STATUS_FIXED_LEN = 2;
/** RFC 8415 section 11.1: a DUID is a 2-byte type and at most 128 bytes of data. */
const DUID_MIN_LEN = 3;
const DUID_MAX_LEN = 130;
const MAX_OPTION_LEN = 0xffff;
const RELAY_FORW = 12;
const TXID_MASK = 0xffffff;
const MAX_LABEL_LEN = 63;

/** Status code option. */
export interface StatusCode {
  code: number;
  message: string;
}

/** IAADDR option: one address of an IA_NA. */
export interface IaAddr {
  addr: Ipv6Addr;
  preferredLifetime: number;
  validLifetime: number;
  status?: StatusCode;
}

/** IA_NA option: a non-temporary address association. */
export interface IaNa {
  iaid: number;
  t1: number;
  t2: number;
  addresses: IaAddr[];
  status?: StatusCode;
}

/** One NTP_SERVER suboption. An FQDN is kept as dotted text. */
export type NtpServer =
  | { kind: "address" | "multicast"; addr: Ipv6Addr }
  | { kind: "fqdn"; name: string };

/** An option this module does not decode, kept as raw bytes. */
export interface RawOption6 {
  code: number;
  data: Uint8Array;
}

/** The decoded top-level options; an absent option is an absent key. */
export interface Dhcpv6Options {
  clientId?: Uint8Array;
  serverId?: Uint8Array;
  iaNa?: IaNa[];
  status?: StatusCode;
  oro?: number[];
  preference?: number;
  /** In hundredths of a second. */
  elapsedTime?: number;
  rapidCommit?: true;
  dnsServers?: Ipv6Addr[];
  ntpServers?: NtpServer[];
  other?: RawOption6[];
}

/** A DHCPv6 client/server message as plain data. */
export interface Dhcpv6Repr {
  msgType: number;
  /** 24-bit transaction id. */
  transactionId: number;
  options: Dhcpv6Options;
}

function err(kind: "truncated" | "malformed" | "unsupported", detail: string): WireError {
  return new WireError("dhcpv6", kind, detail);
}

function badLen(code: number, len: number): WireError {
  return err("malformed", `option ${code} with length ${len}`);
}

/** Checked view over a DHCPv6 client/server message. */
export class Dhcpv6Packet {
  private constructor(readonly buffer: Uint8Array) {}

  /** Wraps `buf` (the UDP payload) after checking the header and the message type. */
  static checked(buf: Uint8Array): Dhcpv6Packet | WireError {
    if (buf.length < HEADER_LEN) return err("truncated", `${buf.length} bytes, header needs 4`);
    const t = buf[0];
    if (t >= RELAY_FORW) return err("unsupported", `relay or unknown message type ${t}`);
    if (t < Dhcpv6MessageType.SOLICIT) return err("malformed", `message type ${t}`);
    return new Dhcpv6Packet(buf);
  }

  /** Message type. */
  get msgType(): number {
    return this.buffer[0];
  }
  /** Transaction id. */
  get transactionId(): number {
    return read32(this.buffer, 0) & TXID_MASK;
  }
  /** The options area (a view). */
  get options(): Uint8Array {
    return this.buffer.subarray(HEADER_LEN);
  }
}

/** Calls `each(code, data)` for every option of `area`; stops at the first error. */
function walkOptions(
  area: Uint8Array,
  each: (code: number, data: Uint8Array) => WireError | undefined,
): WireError | undefined {
  let off = 0;
  while (off < area.length) {
    if (area.length - off < OPT_HEADER_LEN) return err("truncated", "option header");
    const code = read16(area, off);
    const len = read16(area, off + 2);
    if (off + OPT_HEADER_LEN + len > area.length) {
      return err("truncated", `option ${code} of ${len} bytes`);
    }
    const e = each(code, area.subarray(off + OPT_HEADER_LEN, off + OPT_HEADER_LEN + len));
    if (e) return e;
    off += OPT_HEADER_LEN + len;
  }
}

function parseStatus(d: Uint8Array): StatusCode | WireError {
  if (d.length < STATUS_FIXED_LEN) return badLen(Dhcpv6Option.STATUS_CODE, d.length);
  return { code: read16(d, 0), message: new TextDecoder().decode(d.subarray(STATUS_FIXED_LEN)) };
}

function parseIaAddr(d: Uint8Array): IaAddr | WireError {
  if (d.length < IAADDR_FIXED_LEN) return badLen(Dhcpv6Option.IAADDR, d.length);
  const a: IaAddr = {
    addr: d.slice(0, IPV6_LEN),
    preferredLifetime: read32(d, IPV6_LEN),
    validLifetime: read32(d, IPV6_LEN + 4),
  };
  const e = walkOptions(d.subarray(IAADDR_FIXED_LEN), (code, sub) => {
    if (code !== Dhcpv6Option.STATUS_CODE) return;
    const s = parseStatus(sub);
    if (s instanceof WireError) return s;
    a.status = s;
  });
  return e ?? a;
}

function parseIaNa(d: Uint8Array): IaNa | WireError {
  if (d.length < IA_NA_FIXED_LEN) return badLen(Dhcpv6Option.IA_NA, d.length);
  const ia: IaNa = { iaid: read32(d, 0), t1: read32(d, 4), t2: read32(d, 8), addresses: [] };
  const e = walkOptions(d.subarray(IA_NA_FIXED_LEN), (code, sub) => {
    if (code === Dhcpv6Option.IAADDR) {
      const a = parseIaAddr(sub);
      if (a instanceof WireError) return a;
      ia.addresses.push(a);
    } else if (code === Dhcpv6Option.STATUS_CODE) {
      const s = parseStatus(sub);
      if (s instanceof WireError) return s;
      ia.status = s;
    }
  });
  return e ?? ia;
}

function parseAddrList(code: number, d: Uint8Array): Ipv6Addr[] | WireError {
  if (d.length === 0 || d.length % IPV6_LEN !== 0) return badLen(code, d.length);
  const list: Ipv6Addr[] = [];
  for (let i = 0; i < d.length; i += IPV6_LEN) list.push(d.slice(i, i + IPV6_LEN));
  return list;
}

/** Decodes an uncompressed DNS name (RFC 1035 section 3.1) into dotted text. */
function parseDnsName(d: Uint8Array): string | WireError {
  const labels: string[] = [];
  let off = 0;
  while (off < d.length) {
    const len = d[off];
    if (len === 0) {
      if (off !== d.length - 1) return err("malformed", "bytes after the end of an FQDN");
      return labels.join(".");
    }
    if (len > MAX_LABEL_LEN || off + 1 + len > d.length) {
      return err("malformed", `FQDN label of ${len} bytes`);
    }
    labels.push(String.fromCharCode(...d.subarray(off + 1, off + 1 + len)));
    off += 1 + len;
  }
  return err("malformed", "FQDN without its root label");
}

function emitDnsName(name: string): Uint8Array {
  const out: number[] = [];
  for (const label of name.split(".").filter((l) => l !== "")) {
    out.push(label.length, ...Array.from(label, (c) => c.charCodeAt(0) & 0xff));
  }
  out.push(0);
  return Uint8Array.from(out);
}

function parseNtp(d: Uint8Array): NtpServer[] | WireError {
  const list: NtpServer[] = [];
  const e = walkOptions(d, (code, sub) => {
    if (code === NtpSuboption.ADDRESS || code === NtpSuboption.MULTICAST) {
      if (sub.length !== IPV6_LEN) return err("malformed", `NTP suboption ${code} length`);
      list.push({
        kind: code === NtpSuboption.ADDRESS ? "address" : "multicast",
        addr: sub.slice(),
      });
    } else if (code === NtpSuboption.FQDN) {
      const name = parseDnsName(sub);
      if (name instanceof WireError) return name;
      list.push({ kind: "fqdn", name });
    } else {
      return err("malformed", `NTP suboption ${code}`);
    }
  });
  if (e) return e;
  if (list.length === 0) return badLen(Dhcpv6Option.NTP_SERVER, 0);
  return list;
}

function decodeOption(o: Dhcpv6Options, code: number, d: Uint8Array): WireError | undefined {
  switch (code) {
    case Dhcpv6Option.CLIENTID:
    case Dhcpv6Option.SERVERID: {
      if (d.length < DUID_MIN_LEN || d.length > DUID_MAX_LEN) return badLen(code, d.length);
      const key = code === Dhcpv6Option.CLIENTID ? "clientId" : "serverId";
      if (o[key]) return err("malformed", `option ${code} appears twice`);
      o[key] = d.slice();
      return;
    }
    case Dhcpv6Option.IA_NA: {
      const ia = parseIaNa(d);
      if (ia instanceof WireError) return ia;
      (o.iaNa ??= []).push(ia);
      return;
    }
    case Dhcpv6Option.STATUS_CODE: {
      const s = parseStatus(d);
      if (s instanceof WireError) return s;
      o.status = s;
      return;
    }
    case Dhcpv6Option.ORO:
      if (d.length % 2 !== 0) return badLen(code, d.length);
      o.oro = [];
      for (let i = 0; i < d.length; i += 2) o.oro.push(read16(d, i));
      return;
    case Dhcpv6Option.PREFERENCE:
      if (d.length !== 1) return badLen(code, d.length);
      o.preference = d[0];
      return;
    case Dhcpv6Option.ELAPSED_TIME:
      if (d.length !== 2) return badLen(code, d.length);
      o.elapsedTime = read16(d, 0);
      return;
    case Dhcpv6Option.RAPID_COMMIT:
      if (d.length !== 0) return badLen(code, d.length);
      o.rapidCommit = true;
      return;
    case Dhcpv6Option.DNS_SERVERS: {
      const list = parseAddrList(code, d);
      if (list instanceof WireError) return list;
      o.dnsServers = list;
      return;
    }
    case Dhcpv6Option.NTP_SERVER: {
      const list = parseNtp(d);
      if (list instanceof WireError) return list;
      o.ntpServers = list;
      return;
    }
    default:
      (o.other ??= []).push({ code, data: d.slice() });
  }
}

/** Parses a DHCPv6 client/server message (the UDP payload). */
export function parseDhcpv6(buf: Uint8Array): Dhcpv6Repr | WireError {
  const p = Dhcpv6Packet.checked(buf);
  if (p instanceof WireError) return p;
  const options: Dhcpv6Options = {};
  const e = walkOptions(p.options, (code, d) => decodeOption(options, code, d));
  if (e) return e;
  return { msgType: p.msgType, transactionId: p.transactionId, options };
}

/** Accumulates options as byte chunks; the total is assembled once at the end. */
class OptionWriter {
  readonly chunks: Uint8Array[] = [];
  length = 0;
  /** Set when an option body did not fit the 16-bit length field. */
  overflow = false;

  /** Appends option `code` whose body is the concatenation of `parts`. */
  add(code: number, ...parts: Uint8Array[]): void {
    const len = parts.reduce((n, p) => n + p.length, 0);
    const head = new Uint8Array(OPT_HEADER_LEN);
    write16(head, 0, code);
    if (len > MAX_OPTION_LEN) this.overflow = true;
    write16(head, 2, len);
    this.chunks.push(head, ...parts);
    this.length += OPT_HEADER_LEN + len;
  }

  /** All chunks joined. */
  bytes(): Uint8Array {
    return concat(this.chunks, this.length);
  }
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function u32s(...vals: number[]): Uint8Array {
  const out = new Uint8Array(vals.length * 4);
  vals.forEach((v, i) => write32(out, i * 4, v));
  return out;
}

function u16s(...vals: number[]): Uint8Array {
  const out = new Uint8Array(vals.length * 2);
  vals.forEach((v, i) => write16(out, i * 2, v));
  return out;
}

function statusBody(s: StatusCode): Uint8Array[] {
  return [u16s(s.code), new TextEncoder().encode(s.message)];
}

function iaNaBody(ia: IaNa): Uint8Array {
  const w = new OptionWriter();
  for (const a of ia.addresses) {
    const sub = new OptionWriter();
    if (a.status) sub.add(Dhcpv6Option.STATUS_CODE, ...statusBody(a.status));
    w.add(
      Dhcpv6Option.IAADDR,
      a.addr,
      u32s(a.preferredLifetime, a.validLifetime),
      sub.bytes(),
    );
  }
  if (ia.status) w.add(Dhcpv6Option.STATUS_CODE, ...statusBody(ia.status));
  return concat([u32s(ia.iaid, ia.t1, ia.t2), w.bytes()], IA_NA_FIXED_LEN + w.length);
}

/** Emits a message; fails only when an option body exceeds 65535 bytes. */
export function emitDhcpv6(r: Dhcpv6Repr): Uint8Array | WireError {
  const o = r.options;
  const w = new OptionWriter();
  if (o.clientId) w.add(Dhcpv6Option.CLIENTID, o.clientId);
  if (o.serverId) w.add(Dhcpv6Option.SERVERID, o.serverId);
  for (const ia of o.iaNa ?? []) w.add(Dhcpv6Option.IA_NA, iaNaBody(ia));
  if (o.status) w.add(Dhcpv6Option.STATUS_CODE, ...statusBody(o.status));
  if (o.oro) w.add(Dhcpv6Option.ORO, u16s(...o.oro));
  if (o.preference !== undefined) w.add(Dhcpv6Option.PREFERENCE, Uint8Array.of(o.preference));
  if (o.elapsedTime !== undefined) w.add(Dhcpv6Option.ELAPSED_TIME, u16s(o.elapsedTime));
  if (o.rapidCommit) w.add(Dhcpv6Option.RAPID_COMMIT);
  if (o.dnsServers) w.add(Dhcpv6Option.DNS_SERVERS, ...o.dnsServers);
  if (o.ntpServers) {
    const sub = new OptionWriter();
    for (const s of o.ntpServers) {
      if (s.kind === "fqdn") sub.add(NtpSuboption.FQDN, emitDnsName(s.name));
      else {
        sub.add(s.kind === "address" ? NtpSuboption.ADDRESS : NtpSuboption.MULTICAST, s.addr);
      }
    }
    w.add(Dhcpv6Option.NTP_SERVER, sub.bytes());
  }
  for (const x of o.other ?? []) w.add(x.code, x.data);
  if (w.overflow) return err("malformed", "an option exceeds 65535 bytes");
  const head = new Uint8Array(HEADER_LEN);
  write32(head, 0, ((r.msgType << 24) | (r.transactionId & TXID_MASK)) >>> 0);
  return concat([head, w.bytes()], HEADER_LEN + w.length);
}

/** The DUID-LL (RFC 8415 section 11.4) of an Ethernet MAC: type 3, hardware type 1, MAC. */
export function duidLl(mac: MacAddr): Uint8Array {
  const d = new Uint8Array(4 + MAC_LEN);
  write16(d, 0, DUID_LL);
  write16(d, 2, DUID_HW_ETHERNET);
  d.set(mac, 4);
  return d;
}
