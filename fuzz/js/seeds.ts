/**
 * Writes the seed corpora of the JavaScript fuzz targets into `fuzz/corpus/<target>/` from
 * the real captures in `tests/fixtures/*.hex`: each capture is cut at the layer a target
 * parses (whole frame, ARP packet, IP packet, DHCP message, ICMPv6 message). The vhost-user
 * message seeds are the messages a frontend sends while setting a device up, encoded with
 * the project's own encoder (there is no capture of that socket).
 *
 * Run: `scripts/deno run --allow-read --allow-write fuzz/js/seeds.ts`
 * @module
 */

import { fixtureNames, loadFixture } from "../../tests/fixtures/fixtures.ts";
import {
  DHCPV4_CLIENT_PORT,
  DHCPV4_SERVER_PORT,
  DHCPV6_CLIENT_PORT,
  DHCPV6_SERVER_PORT,
  EthernetFrame,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  IP_PROTO_ICMPV6,
  IP_PROTO_UDP,
  parseIpv4Packet,
  parseIpv6Packet,
  parseUdp,
  WireError,
} from "../../wire/mod.ts";
import {
  encodeMessage,
  FLAG_NEED_REPLY,
  memTablePayload,
  Request,
  u64Payload,
  vringAddrPayload,
  vringFilePayload,
  vringStatePayload,
} from "../../vhost/protocol.ts";

const CORPUS = new URL("../corpus/", import.meta.url).pathname;

/** Target name -> seed name -> bytes. */
export type Seeds = Map<string, Map<string, Uint8Array>>;

function add(
  seeds: Seeds,
  target: string,
  name: string,
  bytes: Uint8Array,
): void {
  if (!seeds.has(target)) seeds.set(target, new Map());
  seeds.get(target)!.set(name, bytes);
}

function isDhcp(ports: number[], a: number, b: number): boolean {
  return ports.includes(a) || ports.includes(b);
}

/** Cuts every capture into the inputs of each wire target. */
export function wireSeeds(): Seeds {
  const seeds: Seeds = new Map();
  for (const name of fixtureNames()) {
    const frame = loadFixture(name);
    add(seeds, "gateway", name, frame);
    const eth = EthernetFrame.checked(frame);
    if (eth instanceof WireError) continue;
    if (eth.ethertype === ETHERTYPE_ARP) add(seeds, "arp", name, eth.payload);
    if (eth.ethertype === ETHERTYPE_IPV4) {
      add(seeds, "ipv4", name, eth.payload);
      const ip = parseIpv4Packet(eth.payload);
      if (ip instanceof WireError || ip.protocol !== IP_PROTO_UDP) continue;
      const udp = parseUdp(ip.payload, ip.src, ip.dst);
      const v4 = [DHCPV4_CLIENT_PORT, DHCPV4_SERVER_PORT];
      if (!(udp instanceof WireError) && isDhcp(v4, udp.srcPort, udp.dstPort)) {
        add(seeds, "dhcpv4", name, udp.payload);
      }
    }
    if (eth.ethertype === ETHERTYPE_IPV6) {
      add(seeds, "ipv6", name, eth.payload);
      const ip = parseIpv6Packet(eth.payload);
      if (ip instanceof WireError) continue;
      if (ip.nextHeader === IP_PROTO_ICMPV6) {
        add(seeds, "ndp", name, ip.payload);
      }
      if (ip.nextHeader !== IP_PROTO_UDP) continue;
      const udp = parseUdp(ip.payload, ip.src, ip.dst);
      const v6 = [DHCPV6_CLIENT_PORT, DHCPV6_SERVER_PORT];
      if (!(udp instanceof WireError) && isDhcp(v6, udp.srcPort, udp.dstPort)) {
        add(seeds, "dhcpv6", name, udp.payload);
      }
    }
  }
  return seeds;
}

/** The setup a VMM does, message by message; the first byte is the fd count (see target). */
export function vhostSeeds(): Map<string, Uint8Array> {
  const msgs: Array<[string, number, Uint8Array]> = [
    [
      "get_features",
      0,
      encodeMessage(Request.GET_FEATURES, 0, new Uint8Array(0)),
    ],
    [
      "set_features",
      0,
      encodeMessage(Request.SET_FEATURES, 0, u64Payload(0x1_3020_8000n)),
    ],
    ["set_owner", 0, encodeMessage(Request.SET_OWNER, 0, new Uint8Array(0))],
    [
      "set_mem_table_2",
      2,
      encodeMessage(
        Request.SET_MEM_TABLE,
        FLAG_NEED_REPLY,
        memTablePayload([
          {
            guestPhysAddr: 0n,
            memorySize: 0x100000n,
            userspaceAddr: 0x7f00_0000_0000n,
            mmapOffset: 0n,
          },
          {
            guestPhysAddr: 0x100000n,
            memorySize: 0x100000n,
            userspaceAddr: 0x7f00_1010_0000n,
            mmapOffset: 0n,
          },
        ]),
      ),
    ],
    [
      "set_vring_num",
      0,
      encodeMessage(Request.SET_VRING_NUM, 0, vringStatePayload(0, 256)),
    ],
    [
      "set_vring_base",
      0,
      encodeMessage(Request.SET_VRING_BASE, 0, vringStatePayload(1, 0)),
    ],
    [
      "set_vring_addr",
      0,
      encodeMessage(
        Request.SET_VRING_ADDR,
        0,
        vringAddrPayload(0, {
          desc: 0x7f00_0000_1000n,
          avail: 0x7f00_0000_2000n,
          used: 0x7f00_0000_3000n,
        }),
      ),
    ],
    [
      "set_vring_kick",
      1,
      encodeMessage(Request.SET_VRING_KICK, 0, vringFilePayload(1, false)),
    ],
    [
      "set_vring_call_nofd",
      0,
      encodeMessage(Request.SET_VRING_CALL, 0, vringFilePayload(0, true)),
    ],
    [
      "set_vring_enable",
      0,
      encodeMessage(Request.SET_VRING_ENABLE, 0, vringStatePayload(1, 1)),
    ],
    [
      "get_vring_base",
      0,
      encodeMessage(Request.GET_VRING_BASE, 0, vringStatePayload(0, 0)),
    ],
    [
      "set_status",
      0,
      encodeMessage(Request.SET_STATUS, FLAG_NEED_REPLY, u64Payload(0xfn)),
    ],
  ];
  return new Map(msgs.map(([n, fds, m]) => {
    const input = new Uint8Array(1 + m.length);
    input[0] = fds;
    input.set(m, 1);
    return [n, input];
  }));
}

/** Every target's seeds. */
export function allSeeds(): Seeds {
  const seeds = wireSeeds();
  seeds.set("vhost_message", vhostSeeds());
  return seeds;
}

if (import.meta.main) {
  for (const [target, files] of allSeeds()) {
    const dir = `${CORPUS}${target}`;
    Deno.mkdirSync(dir, { recursive: true });
    for (const [name, bytes] of files) {
      Deno.writeFileSync(`${dir}/${name}`, bytes);
    }
    console.log(`${target}: ${files.size} seeds`);
  }
}
