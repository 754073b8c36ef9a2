# Sourced by check.sh inside the guest (uses its ok/bad): the network that
# init configured over netlink from [init.network]. In the DHCP boot
# (dhcp = true in /etc/pocobelle.toml) the IPv4 side comes from QEMU's
# DHCP server through udhcpc and the dhcp-event applet.

# Static IPv6 address: present on eth0 (index 2), /64, no longer tentative.
line=$(grep '^fec00000000000000000000000000015 ' /proc/net/if_inet6)
set -- $line
if [ -n "$line" ] && [ "$3" = 40 ] && [ "$6" = eth0 ] && [ $((0x$5 & 0x40)) = 0 ]; then
  ok "eth0 fec0::15/64"
else
  bad "ipv6 addresses: $(cat /proc/net/if_inet6)"
fi
# IPv6 default route via fec0::2 on eth0.
if awk '$1 == "00000000000000000000000000000000" && $2 == "00" && $5 == "fec00000000000000000000000000002" && $10 == "eth0" { f = 1 } END { exit !f }' /proc/net/ipv6_route; then
  ok "ipv6 default route via fec0::2"
else
  bad "ipv6 routes: $(cat /proc/net/ipv6_route)"
fi
# The extra route from init.network.routes: 192.168.77.0/24 via 10.0.2.3.
if awk '$1 == "eth0" && $2 == "004DA8C0" && $3 == "0302000A" && $8 == "00FFFFFF" { f = 1 } END { exit !f }' /proc/net/route; then
  ok "route 192.168.77.0/24 via 10.0.2.3"
else
  bad "routes: $(cat /proc/net/route)"
fi

if grep -q '^dhcp = true' /etc/pocobelle.toml; then
  [ "$(cat /proc/sys/net/ipv6/conf/eth0/accept_ra)" = 1 ] && [ "$(cat /proc/sys/net/ipv6/conf/eth0/autoconf)" = 1 ] \
    && ok "ipv6 autoconf on" || bad "ipv6 autoconf sysctls not 1"
  # SLAAC by the kernel from QEMU's router advertisement: a fec0::/64
  # address other than the static one.
  i=0
  while [ $i -lt 10 ] && ! awk '$1 ~ /^fec0/ && $1 != "fec00000000000000000000000000015" && $6 == "eth0" { f = 1 } END { exit !f }' /proc/net/if_inet6; do
    sleep 1; i=$((i + 1))
  done
  awk '$1 ~ /^fec0/ && $1 != "fec00000000000000000000000000015" && $6 == "eth0" { f = 1 } END { exit !f }' /proc/net/if_inet6 \
    && ok "ipv6 autoconf address" || bad "no autoconfigured address: $(cat /proc/net/if_inet6)"
  # With restrict=on QEMU's DHCP server offers no router and no DNS
  # server: init.network.gateway stands in for the router.
  if grep -q '^ip=10.0.2.15$' /run/pocobelle/dhcp.lease && grep -q '^mask=24$' /run/pocobelle/dhcp.lease; then
    ok "dhcp lease 10.0.2.15/24"
  else
    bad "dhcp lease: $(cat /run/pocobelle/dhcp.lease 2>&1)"
  fi
  # The offered DNS servers (none here) go to dhcp-dns for the DNS cache.
  if [ -f /run/pocobelle/dhcp-dns ] && ! grep -qv '^#' /run/pocobelle/dhcp-dns; then
    ok "dhcp-dns lists no server"
  else
    bad "dhcp-dns: $(cat /run/pocobelle/dhcp-dns 2>&1)"
  fi
  # The DHCP client is supervised: killed, it comes back.
  udpid() { for d in /proc/[0-9]*; do [ "$(cat "$d/comm" 2>/dev/null)" = udhcpc ] && { echo "${d#/proc/}"; return; }; done; }
  u1=$(udpid)
  if [ -n "$u1" ]; then
    kill -9 "$u1"
    i=0; u2=
    while [ $i -lt 15 ]; do sleep 1; i=$((i + 1)); u2=$(udpid); [ -n "$u2" ] && [ "$u2" != "$u1" ] && break; done
    [ -n "$u2" ] && [ "$u2" != "$u1" ] && ok "udhcpc restarted (pid $u1 -> $u2)" || bad "udhcpc not restarted"
  else
    bad "no udhcpc process"
  fi
else
  [ "$(cat /proc/sys/net/ipv6/conf/eth0/accept_ra)" = 0 ] && [ "$(cat /proc/sys/net/ipv6/conf/eth0/autoconf)" = 0 ] \
    && ok "ipv6 autoconf off" || bad "ipv6 autoconf sysctls not 0"
fi
