package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A batch is built with google/nftables on a connection that sends nothing
// (recorder) and sent by send: one sendmsg on a plain blocking netlink
// socket, the kernel asked to acknowledge the last message only. The
// kernel processes a batch inside that sendmsg and queues its answers
// (an error for each message it refused, the one acknowledgement) before
// the call returns, so they are read without waiting. google/nftables'
// own Flush asks for an acknowledgement of every message and an echo of
// every rule, and reads them one receive at a time through the runtime's
// poller: most of its time was that.

// recorder is a google/nftables connection that keeps the messages of a
// flush instead of sending them, and acknowledges each.
type recorder struct {
	c    *nftables.Conn
	msgs []netlink.Message
}

func newRecorder() *recorder {
	r := &recorder{}
	r.c, _ = nftables.New(nftables.WithTestDial(r.dial)) // only fails for a lasting connection
	return r
}

func (r *recorder) dial(req []netlink.Message) ([]netlink.Message, error) {
	if len(req) > 0 {
		r.msgs = append(r.msgs, req...)
		return nil, nil
	}
	return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}}, nil
}

// flush takes the batch queued on the recorder's connection.
func (r *recorder) flush() ([]netlink.Message, error) {
	r.msgs = nil
	if err := r.c.Flush(); err != nil {
		return nil, err
	}
	return r.msgs, nil
}

// appendBatch appends msgs to buf as one netlink datagram, numbered from
// 1, with no acknowledgement or echo asked for but on the last message
// before the batch's end.
func appendBatch(buf []byte, msgs []netlink.Message) []byte {
	for i, m := range msgs {
		flags := m.Header.Flags &^ (netlink.Acknowledge | netlink.Echo)
		if i == len(msgs)-2 {
			flags |= netlink.Acknowledge
		}
		n := unix.NLMSG_HDRLEN + len(m.Data)
		buf = binary.NativeEndian.AppendUint32(buf, uint32(n))
		buf = binary.NativeEndian.AppendUint16(buf, uint16(m.Header.Type))
		buf = binary.NativeEndian.AppendUint16(buf, uint16(flags))
		buf = binary.NativeEndian.AppendUint32(buf, uint32(i+1))
		buf = binary.NativeEndian.AppendUint32(buf, 0)
		buf = append(buf, m.Data...)
		for range nlAlign(len(m.Data)) - len(m.Data) {
			buf = append(buf, 0)
		}
	}
	return buf
}

func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// send sends a batch (from its begin message to its end message) to the
// kernel of the network namespace netns (a file descriptor; 0: this
// process's) and waits for its outcome: nil once the kernel has committed
// it, else the errors the kernel reported, each naming its message.
func send(netns int, msgs []netlink.Message) error {
	if len(msgs) < 3 {
		return nil // an empty batch: nothing to commit
	}
	fd, release, err := sockets.get(netns)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer release()
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := appendBatch((*bp)[:0], msgs)
	*bp = buf
	// A batch larger than the socket's send buffer would be refused
	// whole (EMSGSIZE); as root, make room for it.
	if len(buf) > 128<<10 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 2*len(buf))
	}
	for {
		err = unix.Sendto(fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("netlink: send the batch (%d bytes): %w", len(buf), err)
	}
	return replies(fd, msgs, (*bp)[len(buf):cap(buf)])
}

// buffers hold a batch and, after it, room for the replies.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 96<<10); return &b }}

// sockets keeps the socket of the last batch open for the next one in
// the same network namespace. Closing a netfilter socket waits for the
// kernel to free what the batches sent on it replaced (nf_tables flushes
// its destroy work, after an RCU grace period: 5 to 30 ms on a busy
// machine, most of a batch's time, and a second batch would wait for the
// same lock); a batch is in force once acknowledged, so the socket is
// closed later, in the background, or when the process ends.
var sockets socketCache

type socketCache struct {
	mu   sync.Mutex
	ns   uint64 // the inode of the socket's namespace
	fd   int
	busy bool
}

// get returns a socket in netns (0: this thread's namespace) and what to
// call when done with it.
func (c *socketCache) get(netns int) (int, func(), error) {
	var st unix.Stat_t
	var err error
	if netns == 0 {
		err = unix.Stat("/proc/thread-self/ns/net", &st)
	} else {
		err = unix.Fstat(netns, &st)
	}
	if err != nil {
		return -1, nil, fmt.Errorf("network namespace: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd > 0 && c.ns == st.Ino && !c.busy {
		c.busy = true
		return c.fd, func() { c.put(st.Ino, c.fd) }, nil
	}
	fd, err := socket(netns)
	if err != nil {
		return -1, nil, err
	}
	return fd, func() { c.put(st.Ino, fd) }, nil
}

// put keeps fd, a socket in namespace ns, for the next batch, closing
// the socket it replaces in the background.
func (c *socketCache) put(ns uint64, fd int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fd == c.fd {
		c.busy = false
		return
	}
	if c.fd > 0 && !c.busy {
		go unix.Close(c.fd)
	} else if c.fd > 0 {
		go unix.Close(fd)
		return
	}
	c.ns, c.fd, c.busy = ns, fd, false
}

// socket opens a NETLINK_NETFILTER socket in netns (0: this thread's).
func socket(netns int) (int, error) {
	if netns == 0 {
		return openSocket()
	}
	// A socket belongs to the namespace of the thread that makes it: make
	// it on a thread of its own that enters netns, and let that thread end
	// with its goroutine rather than go back to other work.
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(netns, unix.CLONE_NEWNET); err != nil {
			ch <- result{-1, fmt.Errorf("enter the network namespace: %w", err)}
			return
		}
		fd, err := openSocket()
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

func openSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	// Errors carry the refused message's header only, and the kernel's
	// explanation where it gives one.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind: %w", err)
	}
	return fd, nil
}

// replies reads what the kernel queued for the batch msgs: nil when it
// acknowledged the last message and refused none.
func replies(fd int, msgs []netlink.Message, buf []byte) error {
	last := uint32(len(msgs) - 1) // the sequence number of the acknowledged message
	acked := false
	var errs []error
	if len(buf) < 16<<10 {
		buf = make([]byte, 64<<10)
	}
	for {
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			return fmt.Errorf("netlink: receive: %w", err)
		}
		parsed, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("netlink: receive: %w", err)
		}
		for _, m := range parsed {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			code := int32(binary.NativeEndian.Uint32(m.Data))
			seq := m.Header.Seq
			if code == 0 {
				acked = acked || seq == last
				continue
			}
			errs = append(errs, refusal(msgs, seq, -code, m))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if !acked {
		return errors.New("netlink: the kernel did not acknowledge the batch")
	}
	return nil
}

// refusal describes the kernel's error errno for the message numbered seq,
// with the kernel's own explanation when it gave one.
func refusal(msgs []netlink.Message, seq uint32, errno int32, m syscall.NetlinkMessage) error {
	err := error(syscall.Errno(errno))
	what := "the batch"
	if seq >= 1 && int(seq) <= len(msgs) {
		what = describe(msgs[seq-1].Header.Type)
	}
	if text := extAckMessage(m); text != "" {
		return fmt.Errorf("%s: %w (%s)", what, err, text)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// extAckMessage is the text of an extended acknowledgement (the
// NLMSGERR_ATTR_MSG attribute after the capped copy of the header).
func extAckMessage(m syscall.NetlinkMessage) string {
	if m.Header.Flags&unix.NLM_F_ACK_TLVS == 0 || len(m.Data) < 4+unix.NLMSG_HDRLEN {
		return ""
	}
	attrs := m.Data[4+unix.NLMSG_HDRLEN:]
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs))
		typ := binary.NativeEndian.Uint16(attrs[2:])
		if l < 4 || l > len(attrs) {
			break
		}
		if typ == unix.NLMSGERR_ATTR_MSG {
			v := attrs[4:l]
			for len(v) > 0 && v[len(v)-1] == 0 {
				v = v[:len(v)-1]
			}
			return string(v)
		}
		attrs = attrs[min(nlAlign(l), len(attrs)):]
	}
	return ""
}

// describe names a batch message by its type.
func describe(t netlink.HeaderType) string {
	names := map[int]string{
		unix.NFT_MSG_NEWTABLE:   "add table",
		unix.NFT_MSG_DELTABLE:   "delete table",
		unix.NFT_MSG_NEWCHAIN:   "add chain",
		unix.NFT_MSG_NEWRULE:    "add rule",
		unix.NFT_MSG_NEWSET:     "add set",
		unix.NFT_MSG_NEWSETELEM: "add set elements",
	}
	if name, ok := names[int(t)&0xff]; ok && int(t)>>8 == unix.NFNL_SUBSYS_NFTABLES {
		return name
	}
	return fmt.Sprintf("message type %#x", uint16(t))
}
