// Package wgdevice runs a userspace WireGuard device
// (golang.zx2c4.com/wireguard) for hosts whose kernel has no WireGuard.
//
// The device is a TUN link plus a UAPI socket at SocketPath(name), through
// which wg(8) and wgctrl configure it exactly as they configure a kernel
// link. Run serves one device until its context ends. A device works in a
// network namespace only when it runs in its own process started from a
// thread that entered that namespace, so ztwizard runs Run as a process of
// its own.
package wgdevice
