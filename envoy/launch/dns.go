package launch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
)

// resolver is a DNS server on loopback answering A queries from a fixed
// table, so that Envoy resolves the names its caller chooses and asks no
// other server. Unknown names are NXDOMAIN; AAAA queries for known names have no
// answer, so V4_PREFERRED and AUTO lookups settle on the A record.
type resolver struct {
	conn  net.PacketConn
	hosts map[string]netip.Addr // lower-case name without the trailing dot
	done  chan struct{}         // closed when serve has returned
}

// startResolver starts a resolver for hosts; close stops it.
func startResolver(hosts map[string]string) (*resolver, error) {
	r := &resolver{hosts: map[string]netip.Addr{}, done: make(chan struct{})}
	for name, ip := range hosts {
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("hosts: %q = %q: want an IPv4 address", name, ip)
		}
		r.hosts[strings.TrimSuffix(strings.ToLower(name), ".")] = a
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for DNS: %w", err)
	}
	r.conn = conn
	go func() {
		defer close(r.done)
		r.serve()
	}()
	return r, nil
}

// close stops the resolver and waits until it has.
func (r *resolver) close() {
	r.conn.Close()
	<-r.done
}

// port is the UDP port the resolver answers on (127.0.0.1).
func (r *resolver) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

func (r *resolver) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := r.conn.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		if reply := r.answer(buf[:n]); reply != nil {
			_, _ = r.conn.WriteTo(reply, from)
		}
	}
}

// answer builds the reply to one query (RFC 1035 section 4), or nil for a
// packet that is not a one-question query.
func (r *resolver) answer(q []byte) []byte {
	if len(q) < 12 || q[2]&0x80 != 0 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	var labels []string
	i := 12
	for {
		if i >= len(q) {
			return nil
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i:i+l]))
		i += l
	}
	if i+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i:])
	question := q[12 : i+4]
	ip, known := r.hosts[strings.ToLower(strings.Join(labels, "."))]

	const typeA, classIN = 1, 1
	rcode := byte(0)
	if !known {
		rcode = 3 // NXDOMAIN
	}
	answers := uint16(0)
	if known && qtype == typeA {
		answers = 1
	}
	out := make([]byte, 12, 12+len(question)+16)
	copy(out, q[:2])                       // id
	out[2] = 0x84 | q[2]&0x01              // response, authoritative, recursion desired as asked
	out[3] = 0x80 | rcode                  // recursion available
	binary.BigEndian.PutUint16(out[4:], 1) // one question
	binary.BigEndian.PutUint16(out[6:], answers)
	out = append(out, question...)
	if answers == 1 {
		out = append(out, 0xc0, 12) // the name of the question
		out = binary.BigEndian.AppendUint16(out, typeA)
		out = binary.BigEndian.AppendUint16(out, classIN)
		out = binary.BigEndian.AppendUint32(out, 60) // TTL
		out = binary.BigEndian.AppendUint16(out, 4)
		a := ip.As4()
		out = append(out, a[:]...)
	}
	return out
}

// dnsResolverConfig is the bootstrap's typed_dns_resolver_config that sends
// every lookup of Envoy (clusters without a resolver of their own) to r.
func (r *resolver) dnsResolverConfig() map[string]any {
	return map[string]any{
		"name": "envoy.network.dns_resolver.cares",
		"typed_config": map[string]any{
			"@type":                     "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
			"resolvers":                 []any{socketAddress("127.0.0.1", r.port())},
			"use_resolvers_as_fallback": false,
			"dns_resolver_options":      map[string]any{"no_default_search_domain": true},
		},
	}
}

// ListenLoopbackPort listens on TCP port on a loopback address of its own
// (a random one of 127.0.0.0/8). It is for a server that a configuration
// reaches at a fixed port, such as the custos:18000 of
// envoy/bootstrap.yaml: map the name to the listener's address in
// Options.Hosts, and several servers may each have their own.
func ListenLoopbackPort(port int) (net.Listener, error) {
	var err error
	for range 50 {
		ip := netip.AddrFrom4([4]byte{127, byte(1 + rand.IntN(254)), byte(rand.IntN(256)), byte(1 + rand.IntN(254))})
		var l net.Listener
		l, err = net.Listen("tcp4", net.JoinHostPort(ip.String(), strconv.Itoa(port)))
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, fmt.Errorf("listen on a loopback address at port %d: %w", port, err)
}
