#!/usr/bin/env bash
# Capture golden BGP messages from two real FRR speakers (iBGP, l2vpn evpn)
# and write one hex file per message into testdata/frr-8.4/ (see
# docs/captures.md). Needs root, FRR (zebra, bgpd, vtysh), tcpdump, python3.
#
#   scripts/capture-frr.sh [OUTDIR]
#
# Speaker A is a VTEP (advertise-all-vni, vxlan VNI 100 in bridge br100, one
# static MAC behind a veth port, one neighbour entry on the SVI); speaker B is
# a plain EVPN peer. The capture runs on A's side of the link between them.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/testdata/frr-8.4}
TAG="evc$$"
NSA="${TAG}a"
NSB="${TAG}b"
WORK=$(mktemp -d "/tmp/${TAG}.XXXX")
chown frr:frr "$WORK"
IPA=10.199.0.1
IPB=10.199.0.2
VM_MAC=02:00:00:aa:bb:01
VM_IP=192.168.100.10
TCPDUMP_PID=

cleanup() {
    set +e
    for ns in "$NSA" "$NSB"; do
        for d in bgpd zebra; do
            if [ -f "$WORK/$ns-$d.pid" ]; then
                kill "$(cat "$WORK/$ns-$d.pid")" 2>/dev/null
            fi
        done
    done
    if [ -n "$TCPDUMP_PID" ]; then kill "$TCPDUMP_PID" 2>/dev/null; fi
    sleep 0.5
    ip netns del "$NSA" 2>/dev/null
    ip netns del "$NSB" 2>/dev/null
    rm -rf "/var/run/frr/$NSA" "/var/run/frr/$NSB"
    if [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else echo "work dir kept: $WORK"; fi
}
trap cleanup EXIT

# wait_for DESCRIPTION TIMEOUT_S COMMAND... : poll COMMAND until it succeeds.
wait_for() {
    local what=$1 timeout=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            echo "timeout waiting for: $what" >&2
            if [ -n "${PAUSE_ON_FAIL:-}" ]; then echo "namespaces $NSA $NSB kept for ${PAUSE_ON_FAIL}s"; sleep "$PAUSE_ON_FAIL"; fi
            return 1
        fi
        sleep 0.2
    done
    echo "ok: $what"
}

vty() { local ns=$1; shift; local args=(); for c in "$@"; do args+=(-c "$c"); done; vtysh -N "$ns" "${args[@]}" 2>/dev/null; }

# --- network ---------------------------------------------------------------
ip netns add "$NSA"
ip netns add "$NSB"
ip -n "$NSA" link set lo up
ip -n "$NSB" link set lo up
ip -n "$NSA" link add eth0 type veth peer name eth0 netns "$NSB"
ip -n "$NSA" addr add "$IPA/24" dev eth0
ip -n "$NSB" addr add "$IPB/24" dev eth0
ip -n "$NSA" link set eth0 up
ip -n "$NSB" link set eth0 up

# VTEP side: bridge + vxlan + a "VM" port with a static MAC.
ip -n "$NSA" link add br100 type bridge
ip -n "$NSA" link add vxlan100 type vxlan id 100 dstport 4789 local "$IPA" nolearning
ip -n "$NSA" link set vxlan100 master br100
ip -n "$NSA" link add vm1 type veth peer name vm1p
ip -n "$NSA" link set vm1 master br100
# no learning on the VM port: only the static MAC below may be advertised
bridge -n "$NSA" link set dev vm1 learning off
ip netns exec "$NSA" sysctl -qw net.ipv6.conf.vm1p.disable_ipv6=1
ip -n "$NSA" link set vxlan100 up
ip -n "$NSA" link set vm1 up
ip -n "$NSA" link set vm1p up
ip -n "$NSA" link set br100 up
ip -n "$NSA" addr add 192.168.100.1/24 dev br100
bridge -n "$NSA" link set dev vxlan100 learning off neigh_suppress on

# --- FRR -------------------------------------------------------------------
write_conf() {
    local ns=$1 rid=$2 peer=$3 vtep=$4 host=$5
    cat >"$WORK/$ns-zebra.conf" <<EOF
hostname $ns
log file $WORK/$ns-zebra.log
EOF
    # A fixed hostname: FRR sends it in the FQDN capability, so the OPENs
    # are reproducible.
    cat >"$WORK/$ns-bgpd.conf" <<EOF
hostname $host
log file $WORK/$ns-bgpd.log
router bgp 65000
 bgp router-id $rid
 no bgp default ipv4-unicast
 neighbor $peer remote-as 65000
 neighbor $peer update-source $rid
 neighbor $peer timers connect 1
 address-family l2vpn evpn
  neighbor $peer activate
$( [ "$vtep" = yes ] && echo "  advertise-all-vni" )
 exit-address-family
EOF
    chown frr:frr "$WORK/$ns-zebra.conf" "$WORK/$ns-bgpd.conf"
}

start_frr() {
    local ns=$1
    mkdir -p "/var/run/frr/$ns"
    chown frr:frr "/var/run/frr/$ns"
    ip netns exec "$ns" /usr/lib/frr/zebra -d -N "$ns" -P 0 -f "$WORK/$ns-zebra.conf" \
        -i "$WORK/$ns-zebra.pid" -z "/var/run/frr/$ns/zserv.api" --vty_socket "/var/run/frr/$ns"
    wait_for "$ns zebra socket" 10 test -S "/var/run/frr/$ns/zserv.api"
    ip netns exec "$ns" /usr/lib/frr/bgpd -d -N "$ns" -P 0 -f "$WORK/$ns-bgpd.conf" \
        -i "$WORK/$ns-bgpd.pid" -z "/var/run/frr/$ns/zserv.api" --vty_socket "/var/run/frr/$ns"
    wait_for "$ns bgpd vty" 10 test -S "/var/run/frr/$ns/bgpd.vty"
}

write_conf "$NSA" "$IPA" "$IPB" yes vtep-a
write_conf "$NSB" "$IPB" "$IPA" no peer-b

ip netns exec "$NSA" tcpdump -i eth0 -s 0 -U -w "$WORK/bgp.pcap" 'tcp port 179' \
    >"$WORK/tcpdump.log" 2>&1 &
TCPDUMP_PID=$!
wait_for "tcpdump listening" 10 grep -q "listening on" "$WORK/tcpdump.log"

start_frr "$NSA"
start_frr "$NSB"

established() {
    vty "$1" "show bgp neighbors $2 json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(v.get("bgpState") == "Established" for v in d.values()) else 1)'
}
# route_count NS TYPE N: B's EVPN table holds exactly N routes of TYPE.
route_count() {
    vty "$1" "show bgp l2vpn evpn route type $2 json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
# {rd: {prefix: {...}, "rd": ...}, "numPrefix": ...}: count prefixes
n = 0
for rd, v in d.items():
    if isinstance(v, dict):
        n += sum(1 for p in v.values() if isinstance(p, dict))
sys.exit(0 if n == int(sys.argv[1]) else 1)' "$3"
}
msg_stat() { # msg_stat NS PEER FIELD MIN
    vty "$1" "show bgp neighbors $2 json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
v = next(iter(d.values()))
sys.exit(0 if v["messageStats"][sys.argv[1]] >= int(sys.argv[2]) else 1)' "$3" "$4"
}

wait_for "session established" 60 established "$NSB" "$IPA"
wait_for "type-3 route at B" 30 route_count "$NSB" multicast 1

# MAC only (type 2 without IP).
bridge -n "$NSA" fdb add "$VM_MAC" dev vm1 master static
wait_for "type-2 MAC at B" 30 route_count "$NSB" macip 1

# MAC+IP: a neighbour on the SVI.
ip -n "$NSA" neigh add "$VM_IP" lladdr "$VM_MAC" dev br100 nud reachable
wait_for "type-2 MAC+IP at B" 30 route_count "$NSB" macip 2

# ROUTE-REFRESH from B (and A's enhanced route refresh BoRR/EoRR answer).
vty "$NSB" "clear bgp l2vpn evpn * soft in"
wait_for "route refresh received by A" 30 msg_stat "$NSA" "$IPB" routeRefreshRecv 1
sleep 1 # let A finish the re-advertisement it answers with (EoRR is not counted)

# Withdraw the MAC+IP, then the MAC.
ip -n "$NSA" neigh del "$VM_IP" dev br100
wait_for "type-2 MAC+IP withdrawn at B" 30 route_count "$NSB" macip 1
bridge -n "$NSA" fdb del "$VM_MAC" dev vm1 master static
wait_for "type-2 MAC withdrawn at B" 30 route_count "$NSB" macip 0

# NOTIFICATION Cease/administrative shutdown from A.
vty "$NSA" "configure terminal" "router bgp 65000" "neighbor $IPB shutdown"
wait_for "NOTIFICATION received by B" 30 msg_stat "$NSB" "$IPA" notificationsRecv 1
sleep 0.5
kill "$TCPDUMP_PID"
wait "$TCPDUMP_PID" 2>/dev/null || true
TCPDUMP_PID=

mkdir -p "$OUT"
python3 - "$WORK/bgp.pcap" "$OUT" "$IPA" <<'PY'
"""Split a pcap of one BGP session into one hex file per message."""
import os
import struct
import sys

pcap, out, ip_a = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(pcap, "rb").read()
magic = struct.unpack("<I", data[:4])[0]
endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
linktype = struct.unpack(endian + "I", data[20:24])[0]
assert linktype == 1, f"expected Ethernet link type, got {linktype}"

# Collect TCP payload per direction, keyed by sequence number.
streams = {}  # (src, sport, dst, dport) -> {"isn": int, "segs": {seq: bytes}, "t": {seq: ts}}
pos = 24
while pos + 16 <= len(data):
    ts_s, ts_us, incl, _orig = struct.unpack(endian + "IIII", data[pos:pos + 16])
    pkt = data[pos + 16:pos + 16 + incl]
    pos += 16 + incl
    if len(pkt) < 14 or struct.unpack("!H", pkt[12:14])[0] != 0x0800:
        continue
    ip = pkt[14:]
    ihl = (ip[0] & 0x0F) * 4
    tot = struct.unpack("!H", ip[2:4])[0]
    if ip[9] != 6:
        continue
    src = ".".join(map(str, ip[12:16]))
    dst = ".".join(map(str, ip[16:20]))
    tcp = ip[ihl:tot]
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    off = (tcp[12] >> 4) * 4
    flags = tcp[13]
    key = (src, sport, dst, dport)
    st = streams.setdefault(key, {"isn": None, "segs": {}, "t": {}})
    if flags & 0x02:  # SYN: a new connection restarts the stream
        if st["segs"]:
            streams[key + (len(streams),)] = st
            st = streams[key] = {"isn": None, "segs": {}, "t": {}}
        st["isn"] = (seq + 1) & 0xFFFFFFFF
        continue
    payload = tcp[off:]
    if payload:
        st["segs"].setdefault(seq, payload)
        st["t"].setdefault(seq, ts_s + ts_us / 1e6)

def reassemble(st):
    if st["isn"] is None:
        return b""
    buf = bytearray()
    times = []  # (end offset in stream, capture time) per segment used
    nxt = st["isn"]
    segs = dict(st["segs"])
    while True:
        # find a segment covering nxt
        hit = None
        for s, p in segs.items():
            rel = (nxt - s) & 0xFFFFFFFF
            if rel < len(p):
                hit = (s, p, rel)
                break
        if hit is None:
            break
        s, p, rel = hit
        buf += p[rel:]
        times.append((len(buf), st["t"][s]))
        nxt = (s + len(p)) & 0xFFFFFFFF
        del segs[s]
    return bytes(buf), times

def evpn_route_types(nlri):
    types, i = [], 0
    while i + 2 <= len(nlri):
        t, l = nlri[i], nlri[i + 1]
        body = nlri[i + 2:i + 2 + l]
        if t == 2 and len(body) >= 31:
            iplen = body[30]
            types.append("type2-macip" if iplen else "type2-mac")
        else:
            types.append(f"type{t}")
        i += 2 + l
    return sorted(set(types))

def classify(msg):
    typ = msg[18]
    if typ == 1:
        return "open"
    if typ == 3:
        code, sub = msg[19], msg[20]
        names = {6: "cease", 1: "header", 2: "open", 3: "update", 4: "hold-timer", 5: "fsm"}
        cease = {2: "-admin-shutdown", 3: "-peer-deconfigured", 4: "-admin-reset", 9: "-hard-reset"}
        suffix = cease.get(sub, f"-sub{sub}") if code == 6 else f"-sub{sub}"
        return f"notification-{names.get(code, f'code{code}')}{suffix}"
    if typ == 4:
        return "keepalive"
    if typ == 5:
        sub = msg[21]
        return {0: "route-refresh", 1: "route-refresh-borr", 2: "route-refresh-eorr"}.get(sub, f"route-refresh-sub{sub}")
    if typ != 2:
        return f"type{typ}"
    wlen = struct.unpack("!H", msg[19:21])[0]
    alen = struct.unpack("!H", msg[21 + wlen:23 + wlen])[0]
    attrs = msg[23 + wlen:23 + wlen + alen]
    nlri = msg[23 + wlen + alen:]
    reach = unreach = None
    others = 0
    i = 0
    while i < len(attrs):
        fl, tc = attrs[i], attrs[i + 1]
        if fl & 0x10:
            l = struct.unpack("!H", attrs[i + 2:i + 4])[0]
            v = attrs[i + 4:i + 4 + l]
            i += 4 + l
        else:
            l = attrs[i + 2]
            v = attrs[i + 3:i + 3 + l]
            i += 3 + l
        if tc == 14:
            reach = v
        elif tc == 15:
            unreach = v
        else:
            others += 1
    if not attrs and not nlri and not wlen:
        return "eor-ipv4"
    if unreach is not None and reach is None and others == 0:
        afi, safi = struct.unpack("!HB", unreach[:3])
        fam = "evpn" if (afi, safi) == (25, 70) else f"afi{afi}-safi{safi}"
        if len(unreach) == 3:
            return f"eor-{fam}"
        return f"update-{fam}-withdraw-" + "-".join(evpn_route_types(unreach[3:]))
    if reach is not None:
        afi, safi, nhlen = struct.unpack("!HBB", reach[:4])
        fam = "evpn" if (afi, safi) == (25, 70) else f"afi{afi}-safi{safi}"
        nl = reach[4 + nhlen + 1:]
        return f"update-{fam}-" + "-".join(evpn_route_types(nl))
    return "update-other"

os.makedirs(out, exist_ok=True)
manifest = []
written = {}
for key in sorted(streams, key=lambda k: min(streams[k]["t"].values(), default=0)):
    st = streams[key]
    stream, times = reassemble(st)
    direction = "a-to-b" if key[0] == ip_a else "b-to-a"
    i = 0
    while i + 19 <= len(stream):
        assert stream[i:i + 16] == b"\xff" * 16, f"lost sync at {i} in {key}"
        ln = struct.unpack("!H", stream[i + 16:i + 18])[0]
        msg = stream[i:i + ln]
        if len(msg) < ln:
            break
        i += ln
        name = classify(msg)
        if direction == "b-to-a" and msg[18] in (1,):
            name += "-peer"
        # identical bytes already written under this kind: skip
        n, cand = 1, name
        dup = False
        while cand in written:
            if written[cand] == msg:
                dup = True
                break
            n += 1
            cand = f"{name}-{n}"
        ts = next((t for end, t in times if end >= i), 0.0)
        manifest.append((ts, f"{direction} {cand}.hex{' (dup)' if dup else ''} len={ln}"))
        if dup:
            continue
        written[cand] = msg
        hx = msg.hex()
        lines = [hx[j:j + 64] for j in range(0, len(hx), 64)]
        with open(os.path.join(out, cand + ".hex"), "w") as f:
            f.write("\n".join(lines) + "\n")
with open(os.path.join(out, "MANIFEST"), "w") as f:
    f.write("# message order on the wire: direction file length\n")
    manifest = [line for _, line in sorted(manifest, key=lambda m: m[0])]
    f.write("\n".join(manifest) + "\n")
print("\n".join(manifest))
PY
echo "wrote $(ls "$OUT" | wc -l) files to $OUT"
