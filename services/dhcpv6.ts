/**
 * The DHCPv6 server of one vNIC (RFC 8415). It assigns exactly one address, the vNIC's /128,
 * in the first IA_NA of a client, and hands out DNS (option 23) and NTP (option 56) servers.
 * Its DUID is the DUID-LL of the gateway MAC, stable across restarts. Replies go from
 * fe80::1 port 547 to the client's link-local address, port 546.
 * @module
 */

import {
  bytesEqual,
  cidrContains,
  DHCPV6_CLIENT_PORT,
  DHCPV6_SERVER_PORT,
  Dhcpv6MessageType,
  type Dhcpv6Options,
  type Dhcpv6Repr,
  Dhcpv6Status,
  duidLl,
  emitDhcpv6,
  emitUdp,
  type IaNa,
  IP_PROTO_UDP,
  type Ipv6Repr,
  isIpv6LinkLocal,
  parseDhcpv6,
  WireError,
} from "../wire/mod.ts";
import { GATEWAY_IPV6, type Verdict, type VnicContext } from "./context.ts";
import { GATEWAY_TTL, ipv6Frame } from "./frames.ts";
import { drop, reply } from "./verdict.ts";

/** T1 as a fraction of the preferred lifetime (RFC 8415 section 21.4 recommends 0.5). */
export const DHCPV6_T1_FRACTION = 0.5;
/** T2 as a fraction of the preferred lifetime (RFC 8415 section 21.4 recommends 0.8). */
export const DHCPV6_T2_FRACTION = 0.8;
/** Preference in Advertise: 255 tells the client to stop collecting and request at once. */
export const DHCPV6_MAX_PREFERENCE = 255;

/**
 * At most this many IA_NAs are answered, and at most this many stale addresses per IA
 * listed back: an IA_NA answer is larger than the IA_NA asking for it, and these caps keep a
 * reply below the 1280-byte IPv6 minimum MTU whatever the guest packs into its request.
 */
export const DHCPV6_MAX_IAS_ANSWERED = 4;
/** See {@link DHCPV6_MAX_IAS_ANSWERED}. */
export const DHCPV6_MAX_STALE_ADDRESSES = 8;

/** The status codes the server sends, with their message text. */
const STATUS_TEXT = {
  [Dhcpv6Status.SUCCESS]: "success",
  [Dhcpv6Status.NO_ADDRS_AVAIL]: "no addresses available",
  [Dhcpv6Status.NOT_ON_LINK]: "address not on link",
} as const;

function status(code: keyof typeof STATUS_TEXT): { code: number; message: string } {
  return { code, message: STATUS_TEXT[code] };
}

/**
 * The IA_NAs of an answer: the first IA gets the vNIC's address; addresses a client still
 * holds that are not the vNIC's come back with lifetimes 0 (RFC 8415 section 18.3.4) so it
 * stops using them; further IAs get NoAddrsAvail, as there is one address per vNIC.
 */
function leaseIas(ctx: VnicContext, requested: IaNa[]): IaNa[] {
  return requested.slice(0, DHCPV6_MAX_IAS_ANSWERED).map((ia, i) => {
    if (i > 0) {
      return {
        iaid: ia.iaid,
        t1: 0,
        t2: 0,
        addresses: [],
        status: status(Dhcpv6Status.NO_ADDRS_AVAIL),
      };
    }
    const stale = ia.addresses
      .filter((a) => !bytesEqual(a.addr, ctx.ipv6))
      .slice(0, DHCPV6_MAX_STALE_ADDRESSES)
      .map((a) => ({ addr: a.addr, preferredLifetime: 0, validLifetime: 0 }));
    return {
      iaid: ia.iaid,
      t1: Math.floor(ctx.dhcpv6PreferredSecs * DHCPV6_T1_FRACTION),
      t2: Math.floor(ctx.dhcpv6PreferredSecs * DHCPV6_T2_FRACTION),
      addresses: [
        {
          addr: ctx.ipv6,
          preferredLifetime: ctx.dhcpv6PreferredSecs,
          validLifetime: ctx.dhcpv6ValidSecs,
        },
        ...stale,
      ],
    };
  });
}

/** Server id, the client's id when it sent one, and DNS/NTP as currently configured. */
function baseOptions(ctx: VnicContext, req: Dhcpv6Repr): Dhcpv6Options {
  const o: Dhcpv6Options = { serverId: duidLl(ctx.gatewayMac) };
  if (req.options.clientId) o.clientId = req.options.clientId;
  if (ctx.dnsServers6.length > 0) o.dnsServers = [...ctx.dnsServers6];
  if (ctx.ntpServers6.length > 0) {
    o.ntpServers = ctx.ntpServers6.map((addr) => ({ kind: "address" as const, addr }));
  }
  return o;
}

function send(
  ctx: VnicContext,
  ip: Ipv6Repr,
  req: Dhcpv6Repr,
  msgType: number,
  options: Dhcpv6Options,
): Verdict {
  const body = emitDhcpv6({ msgType, transactionId: req.transactionId, options });
  if (body instanceof WireError) return reply(body);
  const udp = emitUdp(
    { srcPort: DHCPV6_SERVER_PORT, dstPort: DHCPV6_CLIENT_PORT, payload: body },
    GATEWAY_IPV6,
    ip.src,
  );
  if (udp instanceof WireError) return reply(udp);
  return reply(
    ipv6Frame(ctx.gatewayMac, ctx.mac, GATEWAY_IPV6, ip.src, IP_PROTO_UDP, GATEWAY_TTL, udp),
  );
}

/** Confirm: Success when every address the client holds is on the network's link. */
function answerConfirm(ctx: VnicContext, ip: Ipv6Repr, req: Dhcpv6Repr): Verdict {
  const addrs = (req.options.iaNa ?? []).flatMap((ia) => ia.addresses);
  // RFC 8415 section 18.3.3: without addresses there is nothing to confirm, and no reply.
  if (addrs.length === 0) return drop("dhcpv6_confirm_without_addresses");
  const onLink = addrs.every((a) => cidrContains(ctx.ipv6Prefix, a.addr));
  const o = baseOptions(ctx, req);
  o.status = status(onLink ? Dhcpv6Status.SUCCESS : Dhcpv6Status.NOT_ON_LINK);
  return send(ctx, ip, req, Dhcpv6MessageType.REPLY, o);
}

/** Handles the UDP payload of a datagram the guest sent to port 547. */
export function answerDhcpv6(ctx: VnicContext, ip: Ipv6Repr, payload: Uint8Array): Verdict {
  // RFC 8415 section 13.1: clients send from their link-local address.
  if (!isIpv6LinkLocal(ip.src)) return drop("dhcpv6_bad_source");
  const req = parseDhcpv6(payload);
  if (req instanceof WireError) return drop("dhcpv6_malformed");
  const o = req.options;
  const T = Dhcpv6MessageType;
  const ourId = duidLl(ctx.gatewayMac);
  const serverIdOk = o.serverId !== undefined && bytesEqual(o.serverId, ourId);
  // RFC 8415 section 16: which messages must, may or must not carry a server id.
  switch (req.msgType) {
    case T.SOLICIT:
    case T.CONFIRM:
    case T.REBIND:
      if (o.serverId) return drop("dhcpv6_unexpected_server_id");
      break;
    case T.REQUEST:
    case T.RENEW:
    case T.RELEASE:
    case T.DECLINE:
      if (!serverIdOk) return drop("dhcpv6_wrong_server_id");
      break;
    case T.INFORMATION_REQUEST:
      if (o.serverId && !serverIdOk) return drop("dhcpv6_wrong_server_id");
      if (o.iaNa) return drop("dhcpv6_unexpected_ia");
      return send(ctx, ip, req, T.REPLY, baseOptions(ctx, req));
    default:
      return drop("dhcpv6_unexpected_type");
  }
  if (!o.clientId) return drop("dhcpv6_missing_client_id");
  const base = baseOptions(ctx, req);
  switch (req.msgType) {
    case T.SOLICIT: {
      if (!o.iaNa) {
        base.status = status(Dhcpv6Status.NO_ADDRS_AVAIL);
        return send(ctx, ip, req, T.ADVERTISE, base);
      }
      base.iaNa = leaseIas(ctx, o.iaNa);
      if (o.rapidCommit) {
        base.rapidCommit = true;
        return send(ctx, ip, req, T.REPLY, base);
      }
      base.preference = DHCPV6_MAX_PREFERENCE;
      return send(ctx, ip, req, T.ADVERTISE, base);
    }
    case T.CONFIRM:
      return answerConfirm(ctx, ip, req);
    case T.RELEASE:
    case T.DECLINE:
      // The address belongs to the vNIC for its whole life: acknowledge, change nothing.
      base.status = status(Dhcpv6Status.SUCCESS);
      return send(ctx, ip, req, T.REPLY, base);
    default:
      // Request, Renew, Rebind.
      if (o.iaNa) base.iaNa = leaseIas(ctx, o.iaNa);
      return send(ctx, ip, req, T.REPLY, base);
  }
}
