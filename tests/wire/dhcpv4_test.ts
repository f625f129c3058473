import { assertEquals } from "../assert.ts";
import {
  BOOTP_MIN_EMIT_LEN,
  BOOTREPLY,
  BOOTREQUEST,
  DhcpMessageType,
  DhcpOption,
  type Dhcpv4Repr,
  emitClasslessRoutes,
  emitDhcpv4,
  parseClasslessRoutes,
  parseDhcpv4,
} from "../../wire/mod.ts";
import { assertWireError, mac, ok, v4 } from "./helpers.ts";

function message(options: Dhcpv4Repr["options"]): Dhcpv4Repr {
  return {
    op: BOOTREPLY,
    hops: 0,
    xid: 0xdeadbeef,
    secs: 3,
    broadcast: true,
    ciaddr: v4("0.0.0.0"),
    yiaddr: v4("10.77.0.20"),
    siaddr: v4("0.0.0.0"),
    giaddr: v4("0.0.0.0"),
    chaddr: mac("52:54:00:12:34:56"),
    options,
  };
}

Deno.test("dhcpv4: every decoded option round trips", () => {
  const m = message({
    messageType: DhcpMessageType.ACK,
    subnetMask: v4("255.255.255.255"),
    routers: [v4("169.254.0.1")],
    dnsServers: [v4("9.9.9.9"), v4("1.1.1.1")],
    hostName: "guest-1",
    ntpServers: [v4("10.0.0.123")],
    requestedIp: v4("10.77.0.20"),
    leaseTime: 86400,
    serverId: v4("169.254.0.1"),
    paramRequestList: [1, 3, 6, 121],
    maxMessageSize: 1500,
    renewalTime: 43200,
    rebindingTime: 75600,
    clientId: new Uint8Array([1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]),
    classlessRoutes: [
      { dest: { addr: v4("169.254.0.1"), prefixLen: 32 }, router: v4("0.0.0.0") },
      { dest: { addr: v4("10.77.0.0"), prefixLen: 24 }, router: v4("169.254.0.1") },
      { dest: { addr: v4("0.0.0.0"), prefixLen: 0 }, router: v4("169.254.0.1") },
    ],
    other: [{ code: 60, data: new Uint8Array([0x75, 0x64]) }],
  });
  const bytes = emitDhcpv4(m);
  assertEquals(parseDhcpv4(bytes), m);
  // Message type comes first among the options.
  assertEquals([bytes[240], bytes[241], bytes[242]], [
    DhcpOption.MESSAGE_TYPE,
    1,
    DhcpMessageType.ACK,
  ]);
});

Deno.test("dhcpv4: emitted messages are padded to the BOOTP minimum and end with END", () => {
  const bytes = emitDhcpv4(message({ messageType: DhcpMessageType.NAK }));
  assertEquals(bytes.length, BOOTP_MIN_EMIT_LEN);
  assertEquals(bytes[243], DhcpOption.END);
  assertEquals(parseDhcpv4(bytes), message({ messageType: DhcpMessageType.NAK }));
});

Deno.test("dhcpv4: RFC 3442 encoding of option 121 (the RFC's examples)", () => {
  const routes = [
    { dest: { addr: v4("0.0.0.0"), prefixLen: 0 }, router: v4("10.0.0.1") },
    { dest: { addr: v4("10.0.0.0"), prefixLen: 8 }, router: v4("10.0.0.2") },
    { dest: { addr: v4("10.17.0.0"), prefixLen: 16 }, router: v4("10.0.0.3") },
    { dest: { addr: v4("10.27.129.0"), prefixLen: 24 }, router: v4("10.0.0.4") },
    { dest: { addr: v4("10.229.0.128"), prefixLen: 25 }, router: v4("10.0.0.5") },
    { dest: { addr: v4("10.198.122.47"), prefixLen: 32 }, router: v4("10.0.0.6") },
  ];
  const enc = emitClasslessRoutes(routes);
  assertEquals(Array.from(enc.subarray(0, 5)), [0, 10, 0, 0, 1]);
  assertEquals(Array.from(enc.subarray(5, 11)), [8, 10, 10, 0, 0, 2]);
  assertEquals(Array.from(enc.subarray(11, 18)), [16, 10, 17, 10, 0, 0, 3]);
  assertEquals(Array.from(enc.subarray(26, 35)), [25, 10, 229, 0, 128, 10, 0, 0, 5]);
  assertEquals(parseClasslessRoutes(enc), routes);
  assertWireError(
    parseClasslessRoutes(new Uint8Array([33, 1, 2, 3, 4, 5, 6, 7, 8, 9])),
    "malformed",
  );
  assertWireError(parseClasslessRoutes(new Uint8Array([24, 10, 0, 0, 1, 2, 3])), "malformed");
  assertWireError(parseClasslessRoutes(new Uint8Array(0)), "malformed");
});

Deno.test("dhcpv4: option longer than 255 bytes is split and re-joined (RFC 3396)", () => {
  const data = new Uint8Array(600).map((_, i) => i & 0xff);
  const m = message({ messageType: DhcpMessageType.OFFER, other: [{ code: 224, data }] });
  const bytes = emitDhcpv4(m);
  assertEquals(parseDhcpv4(bytes), m);
  // Three instances: 255 + 255 + 90.
  assertEquals([bytes[243], bytes[244]], [224, 255]);
});

Deno.test("dhcpv4: header faults rejected", () => {
  const bytes = emitDhcpv4(message({ messageType: DhcpMessageType.OFFER }));
  assertWireError(parseDhcpv4(bytes.subarray(0, 239)), "truncated", "dhcpv4");
  const op = bytes.slice();
  op[0] = 3;
  assertWireError(parseDhcpv4(op), "malformed", "dhcpv4");
  const htype = bytes.slice();
  htype[1] = 6;
  assertWireError(parseDhcpv4(htype), "unsupported", "dhcpv4");
  const hlen = bytes.slice();
  hlen[2] = 16;
  assertWireError(parseDhcpv4(hlen), "unsupported", "dhcpv4");
  const cookie = bytes.slice();
  cookie[236] = 0;
  assertWireError(parseDhcpv4(cookie), "malformed", "dhcpv4");
});

Deno.test("dhcpv4: option faults rejected with the option named", () => {
  const base = emitDhcpv4(message({}));
  const withOptions = (...opts: number[]) => {
    const b = base.slice(0, 240 + opts.length);
    b.set(opts, 240);
    return b;
  };
  assertEquals(ok(parseDhcpv4(withOptions(0, 0, 255))).options, {});
  // No END: accepted when the area runs out exactly at an option boundary.
  assertEquals(ok(parseDhcpv4(withOptions(53, 1, 1))).options, { messageType: 1 });
  assertWireError(parseDhcpv4(withOptions(53)), "truncated");
  assertWireError(parseDhcpv4(withOptions(53, 2, 1)), "truncated");
  assertWireError(parseDhcpv4(withOptions(53, 2, 1, 1, 255)), "malformed");
  assertWireError(parseDhcpv4(withOptions(53, 1, 0, 255)), "malformed");
  assertWireError(parseDhcpv4(withOptions(53, 1, 9, 255)), "malformed");
  assertWireError(parseDhcpv4(withOptions(1, 3, 255, 255, 255, 255)), "malformed");
  assertWireError(parseDhcpv4(withOptions(6, 5, 1, 1, 1, 1, 1, 255)), "malformed");
  assertWireError(parseDhcpv4(withOptions(6, 0, 255)), "malformed");
  assertWireError(parseDhcpv4(withOptions(51, 2, 0, 1, 255)), "malformed");
  assertWireError(parseDhcpv4(withOptions(61, 1, 1, 255)), "malformed");
  assertWireError(parseDhcpv4(withOptions(55, 0, 255)), "malformed");
  assertWireError(parseDhcpv4(withOptions(12, 0, 255)), "malformed");
  assertWireError(parseDhcpv4(withOptions(57, 1, 5, 255)), "malformed");
  const e = assertWireError(parseDhcpv4(withOptions(54, 3, 1, 2, 3, 255)), "malformed");
  assertEquals(e.detail, "option 54 with length 3");
});

Deno.test("dhcpv4: repeated options are concatenated (RFC 3396)", () => {
  const base = emitDhcpv4(message({}));
  const b = base.slice(0, 240 + 13);
  b.set([6, 4, 1, 1, 1, 1, 6, 4, 8, 8, 8, 8, 255], 240);
  assertEquals(ok(parseDhcpv4(b)).options.dnsServers, [v4("1.1.1.1"), v4("8.8.8.8")]);
});

Deno.test("dhcpv4: a BOOTREQUEST round trips with ciaddr and no broadcast flag", () => {
  const m: Dhcpv4Repr = {
    ...message({ messageType: DhcpMessageType.REQUEST }),
    op: BOOTREQUEST,
    broadcast: false,
    ciaddr: v4("10.77.0.20"),
    yiaddr: v4("0.0.0.0"),
  };
  assertEquals(parseDhcpv4(emitDhcpv4(m)), m);
});
