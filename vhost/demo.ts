/**
 * A one-vNIC demo backend for trying the device with a real VMM: serves one vhost-user
 * socket, answers ARP for the gateway address and pings to it, counts the rest, and prints
 * state changes and counters.
 *
 * ```sh
 * scripts/build-shim.sh
 * scripts/deno run --allow-ffi --allow-read --allow-write --allow-env vhost/demo.ts /tmp/nic0.sock
 * qemu-system-x86_64 -m 256M -object memory-backend-memfd,id=mem,size=256M,share=on \
 *   -numa node,memdev=mem -chardev socket,id=c0,path=/tmp/nic0.sock \
 *   -netdev vhost-user,id=n0,chardev=c0 -device virtio-net-pci,netdev=n0,vectors=0 ...
 * # in the guest: ip addr add 169.254.0.2/16 dev eth0; ip link set eth0 up; ping 169.254.0.1
 * ```
 * @module
 */

import { DeviceEvents, type FrameBatch, VhostNetDevice } from "./device.ts";

/** The address the demo answers for. */
export const GATEWAY_IPV4 = new Uint8Array([169, 254, 0, 1]);
/** The MAC it answers with (locally administered). */
export const GATEWAY_MAC = new Uint8Array([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);

const ETH_HDR = 14;
const ETHERTYPE_ARP = 0x0806;
const ETHERTYPE_IPV4 = 0x0800;
const ARP_OP_REQUEST = 1;
const ARP_OP_REPLY = 2;
const IP_PROTO_ICMP = 1;
const ICMP_ECHO_REQUEST = 8;
const ICMP_ECHO_REPLY = 0;

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The Internet checksum of `b`. */
function checksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += (b[i] << 8) | b[i + 1];
  if (b.length % 2) sum += b[b.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

/** The gateway's answer to `frame` (an ARP request or ping for it), or null. */
export function gatewayReply(frame: Uint8Array): Uint8Array | null {
  if (frame.length < ETH_HDR + 28) return null;
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const type = v.getUint16(12);
  if (type === ETHERTYPE_ARP) {
    if (v.getUint16(ETH_HDR + 6) !== ARP_OP_REQUEST) return null;
    if (!equal(frame.subarray(ETH_HDR + 24, ETH_HDR + 28), GATEWAY_IPV4)) return null;
    const out = frame.slice(0, ETH_HDR + 28);
    const o = new DataView(out.buffer);
    out.set(frame.subarray(ETH_HDR + 8, ETH_HDR + 14), 0); // to the asker
    out.set(GATEWAY_MAC, 6);
    o.setUint16(ETH_HDR + 6, ARP_OP_REPLY);
    out.set(GATEWAY_MAC, ETH_HDR + 8);
    out.set(GATEWAY_IPV4, ETH_HDR + 14);
    out.set(frame.subarray(ETH_HDR + 8, ETH_HDR + 18), ETH_HDR + 18); // asker's MAC and IP
    return out;
  }
  if (type !== ETHERTYPE_IPV4) return null;
  const ihl = (frame[ETH_HDR] & 0x0f) * 4;
  const total = v.getUint16(ETH_HDR + 2);
  if (frame[ETH_HDR + 9] !== IP_PROTO_ICMP || ihl < 20 || ETH_HDR + total > frame.length) {
    return null;
  }
  if (!equal(frame.subarray(ETH_HDR + 16, ETH_HDR + 20), GATEWAY_IPV4)) return null;
  if (frame[ETH_HDR + ihl] !== ICMP_ECHO_REQUEST) return null;
  const out = frame.slice(0, ETH_HDR + total);
  out.set(frame.subarray(6, 12), 0);
  out.set(GATEWAY_MAC, 6);
  // Swapping the addresses leaves the IP header checksum as it is.
  out.set(frame.subarray(ETH_HDR + 16, ETH_HDR + 20), ETH_HDR + 12);
  out.set(frame.subarray(ETH_HDR + 12, ETH_HDR + 16), ETH_HDR + 16);
  const icmp = out.subarray(ETH_HDR + ihl);
  icmp[0] = ICMP_ECHO_REPLY;
  icmp[2] = icmp[3] = 0;
  const c = checksum(icmp);
  icmp[2] = c >> 8;
  icmp[3] = c & 0xff;
  return out;
}

/** Answers what the gateway answers among the frames of `rx`, into `tx`; returns how many. */
export function answerBatch(rx: FrameBatch, tx: FrameBatch): number {
  tx.clear();
  for (let i = 0; i < rx.count; i++) {
    const reply = gatewayReply(rx.frame(i));
    if (reply) tx.push(reply);
  }
  return tx.count;
}

if (import.meta.main) {
  const socketPath = Deno.args[0] ?? "/tmp/mvnet-demo.sock";
  const dev = VhostNetDevice.create({ socketPath, mac: "52:54:00:00:00:02" });
  console.log(`listening on ${socketPath}`);
  const rx = dev.frameBuffer(64);
  const tx = dev.frameBuffer(64);
  let last = Date.now();
  Deno.addSignalListener("SIGINT", () => {
    dev.close();
    Deno.exit(0);
  });
  for (;;) {
    const ev = dev.poll(1000);
    if (ev & DeviceEvents.CONTROL) {
      for (const t of dev.service()) console.log("device:", JSON.stringify(t));
    }
    if (ev & DeviceEvents.TX && dev.receiveBurst(rx) > 0 && answerBatch(rx, tx) > 0) {
      dev.sendBurst(tx);
    }
    if (Date.now() - last > 5000) {
      last = Date.now();
      const c = dev.counters();
      console.log(`tx ${c.tx_packets} rx ${c.rx_packets} drops ${c.rx_drop_no_buffer}`);
    }
    await new Promise((r) => setTimeout(r, 0));
  }
}
