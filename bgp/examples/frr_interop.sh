#!/bin/bash
# Throwaway interop check (see docs/interop-frr.md): FRR 8.4 bgpd (-Z, no
# zebra) and the frr_interop example in one fresh network namespace, over its
# loopback: FRR on 127.0.0.1, evpnd-bgp on 127.0.0.2. Cleans up on exit.
# Usage: bgp/examples/frr_interop.sh [PATH_TO_frr_interop_BINARY]
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/examples/frr_interop}
NS=evpnd-interop-$$
DIR=/var/run/frr/$NS
cleanup() {
    [ -f "$DIR/bgpd.pid" ] && kill "$(cat "$DIR/bgpd.pid")" 2>/dev/null || true
    sleep 0.5
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

ip netns add "$NS"
ip -n "$NS" link set lo up
mkdir -p "$DIR"
cat > "$DIR/bgpd.conf" <<CONF
frr defaults datacenter
hostname rr
log file $DIR/bgpd.log debugging
debug bgp neighbor-events
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp default ipv4-unicast
 neighbor 127.0.0.2 remote-as 65000
 neighbor 127.0.0.2 update-source 127.0.0.1
 neighbor 127.0.0.2 timers 3 9
 neighbor 127.0.0.2 timers connect 5
 address-family l2vpn evpn
  neighbor 127.0.0.2 activate
  neighbor 127.0.0.2 route-reflector-client
 exit-address-family
CONF
chown -R frr:frr "$DIR"
ip netns exec "$NS" /usr/lib/frr/bgpd -d -Z -N "$NS" -f "$DIR/bgpd.conf" \
    -i "$DIR/bgpd.pid" --vty_socket "$DIR" -l 127.0.0.1

ip netns exec "$NS" "$BIN" 127.0.0.2 127.0.0.1 65000 10.0.0.2 25 &
SPK=$!
ok=0
for _ in $(seq 1 40); do
    sleep 0.5
    st=$(vtysh -N "$NS" -c 'show bgp l2vpn evpn summary json' 2>/dev/null \
        | python3 -c 'import sys,json; d=json.load(sys.stdin); print(d["peers"]["127.0.0.2"]["state"])' 2>/dev/null || true)
    if [ "$st" = "Established" ]; then ok=1; break; fi
done
echo "FRR sees peer state: ${st:-none}"
if [ $ok = 1 ]; then
    # Wait for our route to arrive.
    for _ in $(seq 1 20); do
        n=$(vtysh -N "$NS" -c 'show bgp l2vpn evpn route type multicast json' 2>/dev/null \
            | python3 -c 'import sys,json; d=json.load(sys.stdin); print(d.get("numPrefix",0))' 2>/dev/null || echo 0)
        [ "$n" != 0 ] && break
        sleep 0.5
    done
    vtysh -N "$NS" -c 'show bgp summary json'
    vtysh -N "$NS" -c 'show bgp l2vpn evpn route'
    # Hard reset from the FRR side: Cease/Admin Reset, both reconnect.
    vtysh -N "$NS" -c 'clear bgp 127.0.0.2' >/dev/null 2>&1
    sleep 1
    ok=0
    for _ in $(seq 1 30); do
        st=$(vtysh -N "$NS" -c 'show bgp neighbor 127.0.0.2 json' 2>/dev/null \
            | python3 -c 'import sys,json; d=json.load(sys.stdin)["127.0.0.2"]; print(d["bgpState"], d.get("connectionsEstablished"))' 2>/dev/null || true)
        if [ "$st" = "Established 2" ]; then ok=1; break; fi
        sleep 0.5
    done
    echo "after clear: ${st:-none}"
    vtysh -N "$NS" -c 'show bgp neighbor 127.0.0.2 json' | python3 -c 'import sys,json; d=json.load(sys.stdin)["127.0.0.2"]; print({k: d.get(k) for k in ["bgpState","bgpTimerHoldTimeMsecs","bgpTimerKeepAliveIntervalMsecs","neighborCapabilities","gracefulRestartInfo"]})'
fi
wait $SPK && spk=0 || spk=$?
echo "speaker exit: $spk"
grep -iE "notif|error" "$DIR/bgpd.log" | tail -20 || true
[ $ok = 1 ] && [ $spk = 0 ]
