/**
 * The DHCPv4 server of one vNIC (RFC 2131). It has exactly one address to give, the vNIC's,
 * as a /32 with classless static routes (RFC 3442) that send the network's subnet, and on
 * public networks everything, through the gateway 169.254.0.1.
 * @module
 */

import {
  BOOTREPLY,
  BOOTREQUEST,
  bytesEqual,
  type ClasslessRoute,
  DhcpMessageType,
  DHCPV4_CLIENT_PORT,
  DHCPV4_SERVER_PORT,
  type Dhcpv4Options,
  type Dhcpv4Repr,
  emitDhcpv4,
  IPV4_BROADCAST,
  IPV4_UNSPECIFIED,
  type Ipv4Addr,
  parseDhcpv4,
  WireError,
} from "../wire/mod.ts";
import { GATEWAY_IPV4, type Verdict, type VnicContext } from "./context.ts";
import { ipv4UdpFrame } from "./frames.ts";
import { drop, reply } from "./verdict.ts";

/** Subnet mask handed out: every guest holds a /32. */
export const DHCPV4_SUBNET_MASK: Ipv4Addr = new Uint8Array([255, 255, 255, 255]);
/** T1 as a fraction of the lease (RFC 2131 section 4.4.5). */
export const DHCPV4_T1_FRACTION = 0.5;
/** T2 as a fraction of the lease (RFC 2131 section 4.4.5). */
export const DHCPV4_T2_FRACTION = 0.875;

const IPV4_BITS = 32;
const DEFAULT_ROUTE = { addr: IPV4_UNSPECIFIED, prefixLen: 0 };

/**
 * Option 121: the gateway on-link, the network's subnet via the gateway, and on public
 * networks the default route via the gateway (a client that gets 121 ignores option 3).
 */
export function classlessRoutes(ctx: VnicContext): ClasslessRoute[] {
  const routes: ClasslessRoute[] = [
    { dest: { addr: GATEWAY_IPV4, prefixLen: IPV4_BITS }, router: IPV4_UNSPECIFIED },
    { dest: ctx.ipv4Subnet, router: GATEWAY_IPV4 },
  ];
  if (ctx.isPublic) routes.push({ dest: DEFAULT_ROUTE, router: GATEWAY_IPV4 });
  return routes;
}

/** The configuration options of every positive answer (OFFER, ACK, ACK to INFORM). */
function configOptions(ctx: VnicContext, messageType: number): Dhcpv4Options {
  const o: Dhcpv4Options = {
    messageType,
    serverId: GATEWAY_IPV4,
    subnetMask: DHCPV4_SUBNET_MASK,
    classlessRoutes: classlessRoutes(ctx),
  };
  if (ctx.isPublic) o.routers = [GATEWAY_IPV4];
  if (ctx.dnsServers4.length > 0) o.dnsServers = [...ctx.dnsServers4];
  if (ctx.ntpServers4.length > 0) o.ntpServers = [...ctx.ntpServers4];
  return o;
}

function withLease(ctx: VnicContext, o: Dhcpv4Options): Dhcpv4Options {
  const lease = ctx.dhcpv4LeaseSecs;
  o.leaseTime = lease;
  o.renewalTime = Math.floor(lease * DHCPV4_T1_FRACTION);
  o.rebindingTime = Math.floor(lease * DHCPV4_T2_FRACTION);
  return o;
}

/**
 * Sends `answer` to the client. IP destination per RFC 2131 section 4.1: NAK broadcast; a
 * client with an address (ciaddr) unicast; the broadcast flag honoured; else unicast to
 * yiaddr (broadcast when there is none, an INFORM without ciaddr). The Ethernet destination
 * is always the vNIC, the only host on its link.
 */
function send(ctx: VnicContext, req: Dhcpv4Repr, answer: Dhcpv4Repr): Verdict {
  let dst: Ipv4Addr;
  if (answer.options.messageType === DhcpMessageType.NAK) dst = IPV4_BROADCAST;
  else if (!bytesEqual(req.ciaddr, IPV4_UNSPECIFIED)) dst = req.ciaddr;
  else if (req.broadcast || bytesEqual(answer.yiaddr, IPV4_UNSPECIFIED)) dst = IPV4_BROADCAST;
  else dst = answer.yiaddr;
  return reply(ipv4UdpFrame(
    ctx.gatewayMac,
    ctx.mac,
    GATEWAY_IPV4,
    dst,
    DHCPV4_SERVER_PORT,
    DHCPV4_CLIENT_PORT,
    emitDhcpv4(answer),
  ));
}

function answerTo(
  req: Dhcpv4Repr,
  yiaddr: Ipv4Addr,
  ciaddr: Ipv4Addr,
  options: Dhcpv4Options,
): Dhcpv4Repr {
  // RFC 6842: the client identifier is echoed so the client can match the answer.
  if (req.options.clientId) options.clientId = req.options.clientId;
  return {
    op: BOOTREPLY,
    hops: 0,
    xid: req.xid,
    secs: 0,
    broadcast: req.broadcast,
    ciaddr,
    yiaddr,
    siaddr: IPV4_UNSPECIFIED,
    giaddr: IPV4_UNSPECIFIED,
    chaddr: req.chaddr,
    options,
  };
}

function ack(ctx: VnicContext, req: Dhcpv4Repr): Verdict {
  const options = withLease(ctx, configOptions(ctx, DhcpMessageType.ACK));
  return send(ctx, req, answerTo(req, ctx.ipv4, req.ciaddr, options));
}

function nak(ctx: VnicContext, req: Dhcpv4Repr): Verdict {
  const options: Dhcpv4Options = { messageType: DhcpMessageType.NAK, serverId: GATEWAY_IPV4 };
  return send(ctx, req, answerTo(req, IPV4_UNSPECIFIED, IPV4_UNSPECIFIED, options));
}

/**
 * DHCPREQUEST in its four client states (RFC 2131 section 4.3.2): SELECTING names a server
 * (ours or another, then stay silent); INIT-REBOOT names the address it wants; RENEWING and
 * REBINDING carry it in ciaddr. The one right address gets an ACK, any other a NAK.
 */
function answerRequest(ctx: VnicContext, req: Dhcpv4Repr): Verdict {
  const o = req.options;
  if (o.serverId && !bytesEqual(o.serverId, GATEWAY_IPV4)) return drop("dhcpv4_other_server");
  const wanted = o.requestedIp ??
    (bytesEqual(req.ciaddr, IPV4_UNSPECIFIED) ? undefined : req.ciaddr);
  if (!wanted) return drop("dhcpv4_request_without_address");
  return bytesEqual(wanted, ctx.ipv4) ? ack(ctx, req) : nak(ctx, req);
}

/** Handles the UDP payload of a datagram the guest sent to port 67. */
export function answerDhcpv4(ctx: VnicContext, payload: Uint8Array): Verdict {
  const req = parseDhcpv4(payload);
  if (req instanceof WireError) return drop("dhcpv4_malformed");
  if (req.op !== BOOTREQUEST) return drop("dhcpv4_not_request");
  if (!bytesEqual(req.chaddr, ctx.mac)) return drop("dhcpv4_bad_chaddr");
  if (!bytesEqual(req.giaddr, IPV4_UNSPECIFIED)) return drop("dhcpv4_relayed");
  switch (req.options.messageType) {
    case undefined:
      return drop("dhcpv4_no_message_type");
    case DhcpMessageType.DISCOVER: {
      const options = withLease(ctx, configOptions(ctx, DhcpMessageType.OFFER));
      return send(ctx, req, answerTo(req, ctx.ipv4, IPV4_UNSPECIFIED, options));
    }
    case DhcpMessageType.REQUEST:
      return answerRequest(ctx, req);
    case DhcpMessageType.INFORM: {
      // RFC 2131 section 3.4: configuration only; no lease, no yiaddr.
      const options = configOptions(ctx, DhcpMessageType.ACK);
      return send(ctx, req, answerTo(req, IPV4_UNSPECIFIED, req.ciaddr, options));
    }
    case DhcpMessageType.RELEASE:
    case DhcpMessageType.DECLINE:
      // The address is the vNIC's for its whole life: nothing to free, nothing to answer.
      return reply();
    default:
      return drop("dhcpv4_unexpected_type");
  }
}
