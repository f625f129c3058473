import { assertEquals } from "../assert.ts";
import {
  ARP_OP_REPLY,
  ARP_OP_REQUEST,
  type ArpRepr,
  emitArp,
  emitEthernet,
  emitIpv4Packet,
  emitIpv6Packet,
  emitUdp,
  EthernetFrame,
  ETHERTYPE_ARP,
  internetChecksum,
  IP_PROTO_UDP,
  Ipv4Packet,
  type Ipv4Repr,
  type Ipv6Repr,
  parseArp,
  parseEthernet,
  parseIpv4Packet,
  parseIpv6Packet,
  parseUdp,
  UdpPacket,
} from "../../wire/mod.ts";
import { assertWireError, mac, ok, v4, v6 } from "./helpers.ts";

Deno.test("ethernet: round trip, view accessors, short and 802.3 frames rejected", () => {
  const r = {
    dst: mac("ff:ff:ff:ff:ff:ff"),
    src: mac("52:54:00:12:34:56"),
    ethertype: ETHERTYPE_ARP,
    payload: new Uint8Array([1, 2, 3]),
  };
  const bytes = emitEthernet(r);
  assertEquals(bytes.length, 17);
  assertEquals(parseEthernet(bytes), r);
  const view = ok(EthernetFrame.checked(bytes));
  assertEquals(view.ethertype, ETHERTYPE_ARP);
  assertEquals(Array.from(view.payload), [1, 2, 3]);
  assertWireError(parseEthernet(bytes.subarray(0, 13)), "truncated", "ethernet");
  const llc = bytes.slice();
  llc[12] = 0x05;
  llc[13] = 0xdc; // 1500: an 802.3 length, not an EtherType
  assertWireError(parseEthernet(llc), "unsupported", "ethernet");
});

Deno.test("arp: request and reply round trip; padding ignored; foreign types rejected", () => {
  const req: ArpRepr = {
    operation: ARP_OP_REQUEST,
    senderMac: mac("52:54:00:12:34:56"),
    senderIp: v4("10.77.0.20"),
    targetMac: mac("00:00:00:00:00:00"),
    targetIp: v4("169.254.0.1"),
  };
  const bytes = emitArp(req);
  assertEquals(bytes.length, 28);
  assertEquals(parseArp(bytes), req);
  const padded = new Uint8Array(46);
  padded.set(bytes);
  assertEquals(parseArp(padded), req);
  const rep = { ...req, operation: ARP_OP_REPLY };
  assertEquals(parseArp(emitArp(rep)), rep);
  assertWireError(parseArp(bytes.subarray(0, 27)), "truncated", "arp");
  const htype = bytes.slice();
  htype[1] = 6; // IEEE 802
  assertWireError(parseArp(htype), "unsupported", "arp");
  const hlen = bytes.slice();
  hlen[4] = 8;
  assertWireError(parseArp(hlen), "malformed", "arp");
  const op = bytes.slice();
  op[7] = 9;
  assertWireError(parseArp(op), "unsupported", "arp");
});

const ip4: Ipv4Repr = {
  tos: 0x10,
  identification: 0x1234,
  dontFragment: true,
  moreFragments: false,
  fragmentOffset: 0,
  ttl: 64,
  protocol: IP_PROTO_UDP,
  src: v4("10.77.0.20"),
  dst: v4("169.254.0.1"),
  payload: new Uint8Array([9, 8, 7, 6, 5]),
};

Deno.test("ipv4: round trip with a valid header checksum; padding trimmed by total length", () => {
  const bytes = ok(emitIpv4Packet(ip4));
  assertEquals(bytes.length, 25);
  assertEquals(internetChecksum(bytes.subarray(0, 20)), 0);
  assertEquals(parseIpv4Packet(bytes), ip4);
  const padded = new Uint8Array(46);
  padded.set(bytes);
  assertEquals(parseIpv4Packet(padded), ip4);
  const frag = { ...ip4, dontFragment: false, moreFragments: true, fragmentOffset: 100 };
  assertEquals(parseIpv4Packet(ok(emitIpv4Packet(frag))), frag);
});

Deno.test("ipv4: options are skipped, the payload starts after them", () => {
  const base = ok(emitIpv4Packet(ip4));
  const withOpts = new Uint8Array(base.length + 4);
  withOpts.set(base.subarray(0, 20));
  withOpts.set([1, 1, 1, 0], 20); // NOP NOP NOP EOL
  withOpts.set(base.subarray(20), 24);
  withOpts[0] = 0x46;
  withOpts[3] = withOpts.length;
  withOpts[10] = withOpts[11] = 0;
  const c = internetChecksum(withOpts.subarray(0, 24));
  withOpts[10] = c >> 8;
  withOpts[11] = c & 0xff;
  const view = ok(Ipv4Packet.checked(withOpts));
  assertEquals(view.headerLen, 24);
  assertEquals(parseIpv4Packet(withOpts), ip4);
});

Deno.test("ipv4: each header fault gives its own error", () => {
  const bytes = ok(emitIpv4Packet(ip4));
  assertWireError(parseIpv4Packet(bytes.subarray(0, 19)), "truncated", "ipv4");
  const ver = bytes.slice();
  ver[0] = 0x65;
  assertWireError(parseIpv4Packet(ver), "bad_version", "ipv4");
  const ihl = bytes.slice();
  ihl[0] = 0x44;
  assertWireError(parseIpv4Packet(ihl), "malformed", "ipv4");
  const ihlBig = bytes.slice();
  ihlBig[0] = 0x4f; // 60-byte header in a 25-byte packet
  assertWireError(parseIpv4Packet(ihlBig), "malformed", "ipv4");
  const totalShort = bytes.slice();
  totalShort[3] = 19;
  assertWireError(parseIpv4Packet(totalShort), "malformed", "ipv4");
  const totalLong = bytes.slice();
  totalLong[3] = 26;
  assertWireError(parseIpv4Packet(totalLong), "truncated", "ipv4");
  const sum = bytes.slice();
  sum[8] = 63; // TTL changed, checksum not
  assertWireError(parseIpv4Packet(sum), "bad_checksum", "ipv4");
});

const ip6: Ipv6Repr = {
  trafficClass: 0xc0,
  flowLabel: 0xaccf6,
  nextHeader: 58,
  hopLimit: 255,
  src: v6("fe80::5054:ff:fe12:3456"),
  dst: v6("ff02::1:ff00:1"),
  payload: new Uint8Array([1, 2, 3, 4]),
};

Deno.test("ipv6: round trip; payload length checked against the buffer", () => {
  const bytes = ok(emitIpv6Packet(ip6));
  assertEquals(bytes.length, 44);
  assertEquals(parseIpv6Packet(bytes), ip6);
  const padded = new Uint8Array(60);
  padded.set(bytes);
  assertEquals(parseIpv6Packet(padded), ip6);
  assertWireError(parseIpv6Packet(bytes.subarray(0, 39)), "truncated", "ipv6");
  assertWireError(parseIpv6Packet(bytes.subarray(0, 43)), "truncated", "ipv6");
  const ver = bytes.slice();
  ver[0] = 0x46;
  assertWireError(parseIpv6Packet(ver), "bad_version", "ipv6");
});

Deno.test("udp: round trip over IPv4 and IPv6 with checksums verified", () => {
  const r = { srcPort: 68, dstPort: 67, payload: new Uint8Array([1, 2, 3]) };
  for (
    const [src, dst] of [[v4("0.0.0.0"), v4("255.255.255.255")], [v6("fe80::1"), v6("ff02::1:2")]]
  ) {
    const bytes = ok(emitUdp(r, src, dst));
    assertEquals(bytes.length, 11);
    assertEquals(parseUdp(bytes, src, dst), r);
    assertEquals(ok(UdpPacket.checked(bytes, src, dst)).length, 11);
    const flipped = bytes.slice();
    flipped[9] ^= 0x40;
    assertWireError(parseUdp(flipped, src, dst), "bad_checksum", "udp");
    // The checksum covers the addresses: the same bytes between other hosts do not verify.
    assertWireError(
      parseUdp(bytes, dst, src.length === 4 ? v4("1.1.1.1") : v6("::1")),
      "bad_checksum",
    );
  }
});

Deno.test("udp: zero checksum means none over IPv4 and is invalid over IPv6", () => {
  const r = { srcPort: 1, dstPort: 2, payload: new Uint8Array([5]) };
  const bytes = ok(emitUdp(r, v4("1.2.3.4"), v4("5.6.7.8")));
  bytes[6] = bytes[7] = 0;
  assertEquals(parseUdp(bytes, v4("1.2.3.4"), v4("5.6.7.8")), r);
  assertWireError(parseUdp(bytes, v6("::1"), v6("::2")), "bad_checksum", "udp");
});

Deno.test("udp: length field below 8 or past the buffer is rejected; trailing bytes ignored", () => {
  const r = { srcPort: 1, dstPort: 2, payload: new Uint8Array([5, 6]) };
  const src = v4("1.2.3.4");
  const dst = v4("5.6.7.8");
  const bytes = ok(emitUdp(r, src, dst));
  assertWireError(parseUdp(bytes.subarray(0, 7), src, dst), "truncated", "udp");
  const short = bytes.slice();
  short[5] = 7;
  assertWireError(parseUdp(short, src, dst), "malformed", "udp");
  const long = bytes.slice();
  long[5] = 11;
  assertWireError(parseUdp(long, src, dst), "truncated", "udp");
  const trailing = new Uint8Array(bytes.length + 3);
  trailing.set(bytes);
  assertEquals(parseUdp(trailing, src, dst), r);
});
