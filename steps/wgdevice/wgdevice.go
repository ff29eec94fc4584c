//go:build linux

package wgdevice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
)

// SocketDir is the directory of the UAPI sockets of userspace WireGuard
// devices, where wg(8) and wgctrl look for them.
const SocketDir = "/var/run/wireguard"

// SocketPath is where the device called name listens for configuration.
func SocketPath(name string) string {
	return SocketDir + "/" + name + ".sock"
}

// Run creates the TUN link name, runs a WireGuard device on it, serves its
// UAPI socket and brings the link up. It returns when ctx is done, the
// device closes or the socket is removed, after closing the device (which
// removes the link) and removing the socket. logf receives the device's
// errors and the line that says it is up; verbosef receives what the device
// says at its verbose level, about seven lines for every peer it adds (a
// first configuration of 1,000 peers writes 7,000). Either may be nil to
// discard them. The device starts with no key and no peers: configure it
// with wg(8) or wgctrl once Ready returns.
func Run(ctx context.Context, name string, logf, verbosef func(format string, args ...any)) (err error) {
	wrap := func(err error) error { return fmt.Errorf("wgdevice: %s: %w", name, err) }
	if err := ctx.Err(); err != nil {
		return wrap(err)
	}
	if logf == nil {
		logf = device.DiscardLogf
	}
	if verbosef == nil {
		verbosef = device.DiscardLogf
	}
	logger := &device.Logger{
		Verbosef: verbosef,
		Errorf:   func(format string, args ...any) { logf("error: "+format, args...) },
	}

	tdev, err := tun.CreateTUN(name, device.DefaultMTU)
	if err != nil {
		return wrap(fmt.Errorf("create TUN: %w", err))
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), logger)
	defer dev.Close()

	uapiFile, err := ipc.UAPIOpen(name)
	if err != nil {
		return wrap(fmt.Errorf("open UAPI socket: %w", err))
	}
	uapi, err := ipc.UAPIListen(name, uapiFile)
	uapiFile.Close()
	if err != nil {
		os.Remove(SocketPath(name))
		return wrap(fmt.Errorf("listen on UAPI socket: %w", err))
	}
	defer func() {
		uapi.Close()
		if rmErr := os.Remove(SocketPath(name)); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
			err = wrap(fmt.Errorf("remove UAPI socket: %w", rmErr))
		}
	}()

	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := uapi.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			go dev.IpcHandle(c)
		}
	}()

	if err := linkUp(name); err != nil {
		return wrap(fmt.Errorf("bring link up: %w", err))
	}
	if err := dev.Up(); err != nil {
		return wrap(fmt.Errorf("bring device up: %w", err))
	}
	logf("device %s up, UAPI at %s", name, SocketPath(name))

	select {
	case <-ctx.Done():
		return nil
	case <-dev.Wait():
		return wrap(errors.New("device closed"))
	case err := <-acceptErr:
		if errors.Is(err, os.ErrNotExist) {
			return wrap(errors.New("UAPI socket removed"))
		}
		return wrap(fmt.Errorf("UAPI socket: %w", err))
	}
}

// linkUp sets the administrative up flag of the link name. The device
// follows its link: it stays down while the link is down.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set flags: %w", err)
	}
	return nil
}

// Ready waits until the device called name answers on its UAPI socket, for
// at most timeout.
func Ready(name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		last = query(name)
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wgdevice: %s: not ready after %s: %w", name, timeout, last)
		}
		time.Sleep(5 * time.Millisecond) // a device starts in 10 to 50 ms
	}
}

// query asks the device for its state once.
func query(name string) error {
	// A quick probe first: wgctrl reports a missing socket as "not exist"
	// without saying which path it looked at.
	if _, err := os.Stat(SocketPath(name)); err != nil {
		return err
	}
	c, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("wgctrl: %w", err)
	}
	defer c.Close()
	if _, err := c.Device(name); err != nil {
		return fmt.Errorf("wgctrl: device: %w", err)
	}
	return nil
}
