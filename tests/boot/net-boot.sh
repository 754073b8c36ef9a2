# Sourced by boot-test.sh after boots 1-5 (uses its boot, expect, refuse,
# $ird, $work and $fails): the network checks of boots 1-3, then boot 6,
# where eth0 gets its IPv4 address from QEMU's DHCP server (slirp still
# serves DHCP with restrict=on) through udhcpc, supervised by init, and
# the dhcp-event applet; IPv6 autoconfiguration is on in that boot.
for n in 1 2 3; do
  for c in "eth0 fec0::15/64" "ipv6 default route via fec0::2" "route 192.168.77.0/24 via 10.0.2.3" "ipv6 autoconf off"; do
    expect "$n" "^checker: CHECK: $c.* ok" "$c"
  done
  expect "$n" 'net: eth0 ready \(link and addresses\)' "link and addresses waited for"
done

ird6="$work/initramfs-dhcp"
rm -rf "$ird6"
cp -a "$ird" "$ird6"
sed -e '/^address = /d' -e 's/^ipv6_autoconf = false/ipv6_autoconf = true/' \
    -e 's/^\[init.network\]/[init.network]\ndhcp = true\ndhcp_client = "\/sbin\/udhcpc"/' \
    "$here/pocobelle.toml" >"$ird6/etc/pocobelle.toml"
grep -q '^dhcp = true' "$ird6/etc/pocobelle.toml" || { echo "boot-test: DHCP config not made" >&2; exit 1; }
(cd "$ird6" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$work/initrd-dhcp.gz"
initrd="$work/initrd-dhcp.gz" boot 6
refuse 6 'Kernel panic|CHECK-FAIL|PANIC' "no kernel panic, init panic or failed check"
for c in "eth0 10.0.2.15/24" "default route via 10.0.2.2" "eth0 fec0::15/64" "ipv6 default route via fec0::2" \
         "route 192.168.77.0/24 via 10.0.2.3" "ipv6 autoconf on" "ipv6 autoconf address" \
         "dhcp lease 10.0.2.15/24" "dhcp-dns lists no server" "udhcpc restarted" "status" "log ring"; do
  expect 6 "^checker: CHECK: $c.* ok" "$c"
done
expect 6 'CHECK: done' "checker finished"
# QEMU's DHCP server with restrict=on offers no router and no DNS server.
expect 6 'dhcp: bound eth0 10.0.2.15/24 router none \(using init.network.gateway 10.0.2.2\)' "lease applied, configured gateway used"
expect 6 'net: route 192.168.77.0/24 via 10.0.2.3' "static IPv4 route added after the lease"
refuse 6 'net: route .*refused' "no static route refused"
expect 6 'supervisor: dhcp is primed' "services waited for the lease"
expect 6 'reboot: Power down' "clean power-off"
