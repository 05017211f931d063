package alerts

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// dialCheck is the check the Go dialer runs on every connection a delivery
// opens: the Control function of the dialer Dialer returns.
func dialCheck(t testing.TB, allow ...string) func(network, address string) error {
	t.Helper()
	var nets []netip.Prefix
	for _, s := range allow {
		nets = append(nets, netip.MustParsePrefix(s))
	}
	d := Dialer(nets, time.Second)
	if d.Control == nil {
		t.Fatal("Dialer has no Control function")
	}
	return func(network, address string) error { return d.Control(network, address, nil) }
}

// hostPort is the network and address string the Go dialer passes to
// Control for a (possibly zoned) address.
func hostPort(a netip.Addr) (network, address string) {
	network = "tcp6"
	if a.Is4() {
		network = "tcp4"
	}
	return network, netip.AddrPortFrom(a, 8080).String()
}

// refused fails the test unless check refuses address the way the
// dispatcher recognises (ErrBlockedAddress: permanent, no retry) and, for
// an address, tells the operator how to allow it.
func refused(t *testing.T, check func(string, string) error, network, address, why string) {
	t.Helper()
	err := check(network, address)
	if err == nil {
		t.Errorf("%s %s allowed, want refused (%s)", network, address, why)
		return
	}
	if !errors.Is(err, ErrBlockedAddress) {
		t.Errorf("%s %s: %v, want ErrBlockedAddress", network, address, err)
	}
	if _, perr := netip.ParseAddrPort(address); perr == nil && !strings.Contains(err.Error(), "allow it with alerts.allow_networks or --webhook-allow-net") {
		t.Errorf("%s %s: %v, want it to say how to allow it", network, address, err)
	}
}

func allowed(t *testing.T, check func(string, string) error, network, address, why string) {
	t.Helper()
	if err := check(network, address); err != nil {
		t.Errorf("%s %s refused (%s): %v", network, address, why, err)
	}
}

// rfcIPv4 is the test's own reading of the RFCs: the IPv4 addresses
// a connection to a would reach through a translator or a tunnel.
func rfcIPv4(a netip.Addr) []netip.Addr {
	a = a.WithZone("")
	b := a.As16()
	v4 := func(i int, xor byte) netip.Addr {
		return netip.AddrFrom4([4]byte{b[i] ^ xor, b[i+1] ^ xor, b[i+2] ^ xor, b[i+3] ^ xor})
	}
	in := func(p string) bool { return netip.MustParsePrefix(p).Contains(a) }
	switch {
	case !a.Is6() || a.Is4In6():
		return nil // IPv4 itself, or mapped: the dialer connects to the IPv4 address
	case in("64:ff9b::/96"): // NAT64 well-known prefix, RFC 6052: the last 32 bits
		return []netip.Addr{v4(12, 0)}
	case in("::/96") && !in("::/127"): // IPv4-compatible, RFC 4291 2.5.5.1 (:: and ::1 are not)
		return []netip.Addr{v4(12, 0)}
	case in("2002::/16"): // 6to4, RFC 3056: bits 16-47
		return []netip.Addr{v4(2, 0)}
	case in("2001::/32"): // Teredo, RFC 4380: server in bits 32-63, client inverted in the last 32
		return []netip.Addr{v4(4, 0), v4(12, 0xff)}
	}
	return nil
}

// registryEntry is one row of an IANA special-purpose address registry.
type registryEntry struct {
	prefixes []netip.Prefix
	name     string
}

// readRegistry reads a registry in IANA's CSV form: "Address Block" may
// hold several prefixes ("192.0.0.170/32, 192.0.0.171/32") and footnote
// marks ("2002::/16 [3]").
func readRegistry(t *testing.T, file string) []registryEntry {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(rows) < 2 || rows[0][0] != "Address Block" || rows[0][1] != "Name" {
		t.Fatalf("%s: not an IANA special-purpose registry", file)
	}
	var out []registryEntry
	for _, row := range rows[1:] {
		e := registryEntry{name: row[1]}
		for _, block := range strings.Split(row[0], ",") {
			block, _, _ = strings.Cut(strings.TrimSpace(block), " ")
			p, err := netip.ParsePrefix(block)
			if err != nil {
				t.Fatalf("%s: %q: %v", file, row[0], err)
			}
			e.prefixes = append(e.prefixes, p)
		}
		out = append(out, e)
	}
	return out
}

// lastAddr is the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// TestDialCheckRegistries walks every entry of the IANA IPv4 and IPv6
// special-purpose address registries through the dialer's check: the first
// and the last address of each block are refused by default, and allowed
// once the block (and, where the address carries IPv4, that IPv4) is
// allowed. Entries IANA marks globally reachable (AS112, AMT, ORCHIDv2,
// TURN anycast, 64:ff9b::/96, ...) are refused too: a webhook has no
// business with any of them.
func TestDialCheckRegistries(t *testing.T) {
	byDefault := dialCheck(t)
	for _, file := range []string{"testdata/iana-ipv4-special-registry.csv", "testdata/iana-ipv6-special-registry.csv"} {
		entries := readRegistry(t, file)
		if len(entries) < 20 {
			t.Fatalf("%s: %d entries, want the whole registry", file, len(entries))
		}
		for _, e := range entries {
			for _, p := range e.prefixes {
				reps := []netip.Addr{p.Addr()}
				if last := lastAddr(p); last != p.Addr() {
					reps = append(reps, last)
				}
				for _, a := range reps {
					network, address := hostPort(a)
					why := fmt.Sprintf("%s %s", p, e.name)
					refused(t, byDefault, network, address, why+", by default")

					open := []string{p.String()}
					var carried []string
					for _, v4 := range rfcIPv4(a) {
						carried = append(carried, netip.PrefixFrom(v4, 32).String())
					}
					allowed(t, dialCheck(t, append(open, carried...)...), network, address, why+" allowed with "+strings.Join(carried, ", "))
					if len(carried) > 0 {
						// Opening the block alone does not open what it tunnels to,
						// nor does opening that IPv4 open the block.
						refused(t, dialCheck(t, open...), network, address, why+" allowed, but not "+strings.Join(carried, ", "))
						refused(t, dialCheck(t, carried...), network, address, strings.Join(carried, ", ")+" allowed, but not "+why)
					}
				}
			}
		}
	}
}

// TestDialCheckEncodings: addresses that reach a blocked network through
// another spelling — a zone, IPv4 inside IPv6 — are refused by default and
// allowed only once every network they reach is.
func TestDialCheckEncodings(t *testing.T) {
	for _, c := range []struct {
		network, address string
		open             []string // what must be allowed for the address to be
	}{
		{"tcp6", "[::1%lo]:8080", []string{"::1/128"}},
		{"tcp6", "[fe80::1%eth0]:8080", []string{"fe80::/10"}},
		{"tcp6", "[fe80::a9fe:a9fe%2]:80", []string{"fe80::/10"}},
		{"tcp6", "[fd00:ec2::254]:80", []string{"fc00::/7"}}, // AWS's IPv6 metadata address
		{"tcp4", "169.254.169.254:80", []string{"169.254.0.0/16"}},
		{"tcp4", "127.0.0.1:8080", []string{"127.0.0.0/8"}}, // how Go's dialer passes ::ffff:127.0.0.1
		{"tcp6", "[::ffff:127.0.0.1]:8080", []string{"127.0.0.0/8"}},
		{"tcp6", "[::ffff:169.254.169.254]:80", []string{"169.254.0.0/16"}},
		{"tcp6", "[::7f00:1]:8080", []string{"::/96", "127.0.0.0/8"}},
		{"tcp6", "[64:ff9b::7f00:1]:8080", []string{"64:ff9b::/96", "127.0.0.0/8"}},
		{"tcp6", "[64:ff9b::a9fe:a9fe]:80", []string{"64:ff9b::/96", "169.254.0.0/16"}},
		// The local-use NAT64 prefix (RFC 8215) puts the IPv4 address where
		// its operator chose; opening the prefix is the operator's word on it.
		{"tcp6", "[64:ff9b:1::a00:1]:8080", []string{"64:ff9b:1::/48"}},
		{"tcp6", "[2002:7f00:1::1]:8080", []string{"2002::/16", "127.0.0.0/8"}},
		{"tcp6", "[2002:a9fe:a9fe::1]:80", []string{"2002::/16", "169.254.0.0/16"}},
		// Teredo: server 8.8.8.8, client 127.0.0.1 (stored inverted: 80ff:fffe).
		{"tcp6", "[2001:0:808:808::80ff:fffe]:8080", []string{"2001::/32", "127.0.0.0/8"}},
		// Teredo: server 10.0.0.1, client 1.1.1.1 (fefe:fefe).
		{"tcp6", "[2001:0:a00:1::fefe:fefe]:8080", []string{"2001::/32", "10.0.0.0/8"}},
	} {
		refused(t, dialCheck(t), c.network, c.address, "by default")
		allowed(t, dialCheck(t, c.open...), c.network, c.address, strings.Join(c.open, ", ")+" allowed")
		if len(c.open) > 1 {
			for i := range c.open {
				some := append(append([]string{}, c.open[:i]...), c.open[i+1:]...)
				refused(t, dialCheck(t, some...), c.network, c.address, "only "+strings.Join(some, ", ")+" allowed")
			}
		}
	}
}

// TestDialCheckPublic: a guard that refused everything would pass the
// tests above; public addresses, on any port, go through by default, and
// tunnels to public addresses once the tunnel's block is allowed.
func TestDialCheckPublic(t *testing.T) {
	byDefault := dialCheck(t)
	for _, address := range []string{
		"8.8.8.8:443", "1.1.1.1:80", "93.184.215.14:8443", "[2606:4700:4700::1111]:443",
		"[2001:4860:4860::8888]:9000", "[::ffff:8.8.8.8]:443",
		"[2606:4700:4700::1111%eth0]:443", // a zone does not make a public address private
	} {
		network, _ := hostPort(netip.MustParseAddrPort(address).Addr())
		allowed(t, byDefault, network, address, "public")
	}
	for _, c := range []struct{ address, open string }{
		{"[64:ff9b::808:808]:443", "64:ff9b::/96"},
		{"[2002:808:808::1]:443", "2002::/16"},
		{"[2001:0:808:808::fefe:fefe]:443", "2001::/32"}, // Teredo: server 8.8.8.8, client 1.1.1.1
		{"[::808:808]:443", "::/96"},
	} {
		refused(t, byDefault, "tcp6", c.address, "by default")
		allowed(t, dialCheck(t, c.open), "tcp6", c.address, c.open+" allowed, carrying a public address")
	}
	refused(t, byDefault, "tcp", "example.com:80", "not an address")
	refused(t, byDefault, "tcp4", "8.8.8.8", "no port")
}

func TestDialCheckErrorNamesAddressAndNetwork(t *testing.T) {
	for _, c := range []struct{ address, want string }{
		{"169.254.169.254:80", "169.254.169.254 is in 169.254.0.0/16"},
		{"[::ffff:10.1.2.3]:80", "10.1.2.3 is in 10.0.0.0/8"},
		{"[2001:db8::1]:80", "2001:db8::1 is in 2001:db8::/32"},
		{"[fe80::1%eth0]:80", "fe80::1 is outside 2000::/3"},
		{"[64:ff9b::a9fe:a9fe]:80", "169.254.169.254, which is in 169.254.0.0/16"},
	} {
		err := dialCheck(t, "64:ff9b::/96")("tcp6", c.address)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "allow it with alerts.allow_networks or --webhook-allow-net") {
			t.Errorf("%s: %v, want it to say %q and how to allow it", c.address, err, c.want)
		}
	}
}

// TestClientRefusesLoopbackSpellings: a real client posting to real
// loopback servers through zoned and IPv4-mapped URLs.
func TestClientRefusesLoopbackSpellings(t *testing.T) {
	serve := func(t *testing.T, ln net.Listener) (*httptest.Server, *atomic.Int32) {
		var hits atomic.Int32
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
		srv.Listener.Close()
		srv.Listener = ln
		srv.Start()
		t.Cleanup(srv.Close)
		return srv, &hits
	}
	post := func(c *http.Client, url string) error {
		resp, err := c.Post(url, "application/json", strings.NewReader("{}"))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	try := func(t *testing.T, url, open string, hits *atomic.Int32) {
		if err := post(NewClient(nil, 2*time.Second), url); !errors.Is(err, ErrBlockedAddress) {
			t.Errorf("%s with nothing allowed: %v, want ErrBlockedAddress", url, err)
		}
		if n := hits.Load(); n != 0 {
			t.Fatalf("%s with nothing allowed reached the server (%d requests)", url, n)
		}
		if err := post(NewClient([]netip.Prefix{netip.MustParsePrefix(open)}, 2*time.Second), url); err != nil {
			t.Errorf("%s with %s allowed: %v", url, open, err)
		}
		if n := hits.Load(); n != 1 {
			t.Errorf("%s with %s allowed: %d requests, want 1", url, open, n)
		}
	}

	t.Run("mapped", func(t *testing.T) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv, hits := serve(t, ln)
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		try(t, fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/", port), "127.0.0.0/8", hits)
	})
	t.Run("zoned", func(t *testing.T) {
		ln, err := net.Listen("tcp6", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback here: %v", err)
		}
		lo := loopbackInterface(t)
		srv, hits := serve(t, ln)
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		try(t, fmt.Sprintf("http://[::1%%25%s]:%d/", lo, port), "::1/128", hits)
	})
}

// loopbackInterface is the name of the loopback interface ("lo" on Linux,
// "lo0" on the BSDs), for a zone the resolver accepts.
func loopbackInterface(t *testing.T) string {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			return i.Name
		}
	}
	t.Skip("no loopback interface")
	return ""
}

// FuzzDialCheck: no address string makes the check panic, and an address
// in a well-known blocked network, however it is spelled (zone, IPv4-mapped,
// or carried inside an IPv6 tunnel or translation address), is refused.
func FuzzDialCheck(f *testing.F) {
	for _, s := range []string{
		"[::1%lo]:8080", "[fe80::1%eth0]:80", "[::ffff:127.0.0.1]:8080", "[::7f00:1]:8080",
		"[64:ff9b::7f00:1]:80", "[64:ff9b::a9fe:a9fe]:80", "[64:ff9b:1::a00:1]:80",
		"[2002:7f00:1::1]:80", "[2002:a9fe:a9fe::1]:80", "[2001:0:808:808::80ff:fffe]:80",
		"[2001:0:a00:1::fefe:fefe]:80", "169.254.169.254:80", "[fd00:ec2::254]:80",
		"8.8.8.8:443", "[2606:4700:4700::1111]:443", "::1", "10.0.0.1", "example.com:80", "[::1%]:1", "",
	} {
		f.Add(s)
	}
	// Loopback, private, link-local and the cloud metadata addresses: what
	// no policy that works at all may let through by default.
	var blocked []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16",
		"169.254.169.254/32", "::/128", "::1/128", "fc00::/7", "fe80::/10", "fd00:ec2::254/128",
	} {
		blocked = append(blocked, netip.MustParsePrefix(s))
	}
	isBlocked := func(a netip.Addr) bool {
		for _, p := range blocked {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	byDefault := dialCheck(f)
	tunnelsOpen := dialCheck(f, "::/96", "64:ff9b::/96", "2002::/16", "2001::/32")

	f.Fuzz(func(t *testing.T, address string) {
		for _, network := range []string{"tcp4", "tcp6", "tcp"} {
			byDefault(network, address)
			tunnelsOpen(network, address)
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			a, err := netip.ParseAddr(address)
			if err != nil {
				return
			}
			ap = netip.AddrPortFrom(a, 443)
			address = ap.String()
		}
		a := ap.Addr().WithZone("").Unmap()
		network, _ := hostPort(a)
		if isBlocked(a) {
			refused(t, byDefault, network, address, "a well-known blocked network")
		}
		for _, v4 := range rfcIPv4(a) {
			if isBlocked(v4) {
				refused(t, tunnelsOpen, network, address, "tunnels allowed, but it carries "+v4.String())
			}
		}
	})
}
