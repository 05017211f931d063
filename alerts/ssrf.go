package alerts

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"code.dny.dev/ssrf"
)

// Webhook targets are checked when vigil connects, after DNS, in the
// dialer's Control function: a name that resolves to a public address when
// a receiver subscribes and to 127.0.0.1 later (DNS rebinding) is refused
// all the same.
//
// What is refused comes from code.dny.dev/ssrf, generated from the IANA
// IPv4 and IPv6 Special-Purpose Address Registries: every IPv4 entry and
// multicast, everything outside 2000::/3, and the registries' entries inside
// it. In v0.3.0 that refuses every registry entry, the globally reachable
// ones included (AS112, AMT, ORCHIDv2, PCP and TURN anycast, 64:ff9b::/96),
// so nothing is added to it here. What the library leaves to its caller:
//
//   - Zones. Its prefixes never contain a zoned address, so it refuses
//     [::1%lo] only because a zoned address is never in 2000::/3, and would
//     refuse it even once ::1/128 is allowed. The zone only picks the link:
//     the address is checked without it.
//   - IPv4-mapped addresses. It checks ::ffff:a.b.c.d as IPv6, outside
//     2000::/3, while Go's dialer connects to a.b.c.d: the address is
//     unmapped and checked as the IPv4 address it is.
//   - IPv4 carried inside IPv6. IPv4-compatible (::a.b.c.d), NAT64
//     (64:ff9b::/96), 6to4 and Teredo addresses reach an IPv4 address
//     through a translator or a tunnel. The library refuses the blocks
//     outright, but once an operator allows one, each IPv4 address it
//     carries must pass the same check.
//   - Ports. Safe allows only 80 and 443 by default; receivers listen on
//     any port, so only the address is checked (SafeAddr).

// ErrBlockedAddress is returned for a webhook target in a blocked network.
var ErrBlockedAddress = errors.New("webhook target address not allowed")

// Dialer returns a dialer that checks, after DNS resolution and at connect
// time, that the address is not in a blocked network unless it is in one
// of allow. Checking at dial time (not when the URL is saved) defeats DNS
// rebinding.
func Dialer(allow []netip.Prefix, timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, Control: newGuard(allow).control}
}

// guard decides which addresses deliveries may connect to. It is safe for
// concurrent use and never changes after newGuard.
type guard struct {
	registry *ssrf.Guardian
	allow    []netip.Prefix // the operator's exceptions; IPv4-mapped ones as IPv4
}

func newGuard(allow []netip.Prefix) *guard {
	g := &guard{registry: ssrf.New()}
	for _, p := range allow {
		// Addresses are unmapped before they are checked, so an allowed
		// ::ffff:10.0.0.0/104 means 10.0.0.0/8.
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		g.allow = append(g.allow, p)
	}
	return g
}

// control is the net.Dialer's Control: address is the "host:port" the
// dialer is about to connect to, an IP address by now.
func (g *guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address and port", ErrBlockedAddress, address)
	}
	return g.check(ap.Addr())
}

// check allows a iff (it is in an allowed network or the registries do not
// refuse it) and every IPv4 address it carries passes the same test.
func (g *guard) check(a netip.Addr) error {
	a = a.WithZone("").Unmap()
	if why := g.refusal(a); why != "" {
		return fmt.Errorf("%w: %s %s (allow it with alerts.allow_networks or --webhook-allow-net)", ErrBlockedAddress, a, why)
	}
	for _, v4 := range carriedIPv4(a) {
		if why := g.refusal(v4); why != "" {
			return fmt.Errorf("%w: %s carries %s, which %s (allow it with alerts.allow_networks or --webhook-allow-net)", ErrBlockedAddress, a, v4, why)
		}
	}
	return nil
}

// refusal says why a is refused ("is in 10.0.0.0/8"), or "" if it is not.
func (g *guard) refusal(a netip.Addr) string {
	for _, p := range g.allow {
		if p.Contains(a) {
			return ""
		}
	}
	err := g.registry.SafeAddr(a)
	if err == nil {
		return ""
	}
	// Name the network: the most specific of the library's own lists.
	denied := ssrf.IPv4DeniedPrefixes
	if a.Is6() {
		if !ssrf.IPv6GlobalUnicast.Contains(a) {
			return "is outside " + ssrf.IPv6GlobalUnicast.String() + ", the IPv6 global unicast range"
		}
		denied = ssrf.IPv6DeniedPrefixes
	}
	var in netip.Prefix // Bits() is -1
	for _, p := range denied {
		if p.Contains(a) && p.Bits() > in.Bits() {
			in = p
		}
	}
	if in.IsValid() {
		return "is in " + in.String()
	}
	return "is refused: " + err.Error()
}

// The IPv6 blocks whose addresses carry an IPv4 address.
var (
	ipv4Compatible = netip.MustParsePrefix("::/96")     // RFC 4291 2.5.5.1, deprecated
	nat64          = ssrf.IPv6NAT64Prefix               // 64:ff9b::/96, RFC 6052
	sixToFour      = netip.MustParsePrefix("2002::/16") // RFC 3056
	teredo         = netip.MustParsePrefix("2001::/32") // RFC 4380
)

// carriedIPv4 returns the IPv4 addresses a connection to the IPv6 address a
// (unzoned, unmapped) may reach through a translator or a tunnel. The
// local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215) is not read: its
// operator chooses where the IPv4 address sits, and allowing that prefix is
// the operator's word on it.
func carriedIPv4(a netip.Addr) []netip.Addr {
	if !a.Is6() {
		return nil
	}
	b := a.As16()
	at := func(i int) netip.Addr { return netip.AddrFrom4([4]byte(b[i : i+4])) }
	switch {
	case nat64.Contains(a), ipv4Compatible.Contains(a) && !a.IsUnspecified() && !a.IsLoopback():
		return []netip.Addr{at(12)}
	case sixToFour.Contains(a): // 2002:AABB:CCDD::/48
		return []netip.Addr{at(2)}
	case teredo.Contains(a): // 2001:0:server:flags:port:client, the client inverted
		client := [4]byte(b[12:16])
		for i := range client {
			client[i] ^= 0xff
		}
		return []netip.Addr{at(4), netip.AddrFrom4(client)}
	}
	return nil
}
