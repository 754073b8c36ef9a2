# board/common/debs.sh: the Debian bookworm packages every image (and the
# QEMU boot test, which shares the download) takes from the board's
# architecture, besides the kernel. Shell syntax, sourced by
# scripts/image.sh and tests/boot/fetch-armhf.sh.

# BusyBox (the shell and tools), e2fsck (the recovery boot's check) and
# the CA bundle (the mail client's STARTTLS).
BASE_DEBS="busybox-static e2fsck-static ca-certificates"

# Network UPS Tools 2.8.0: its drivers and upsd, run by pocobelle init
# when [ups] mode is "local", and the shared libraries they load (glibc,
# libusb, NSS for upsd's TLS, TCP wrappers and its Kerberos chain). Only
# the files the chosen drivers and upsd need are copied into the image
# (scripts/elf-closure.sh), not the packages.
NUT_DEBS="nut-server libupsclient6 libusb-1.0-0 libudev1 libwrap0 libnsl2 libtirpc3
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1
  libnss3 libnspr4 libc6"

# The NUT drivers an image carries (in /lib/nut): USB HID (most home
# UPSes), the Q* protocol family over USB and serial (many cheap ones),
# APC's serial protocol, and dummy-ups (a UPS played from a file, or a
# repeater of another upsd: the tests use it).
NUT_DRIVERS="usbhid-ups nutdrv_qx blazer_usb blazer_ser apcsmart dummy-ups"
