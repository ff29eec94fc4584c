// Command storegen grows a state store to a given number of certificate
// records, for the bench scripts: it copies the last X.509 client and SSH
// user certificate of the store (made by ztwizard) under fresh serials,
// half of each, with their files and audit lines, as if ztwizard had issued
// them one by one. It writes index.json and counters.json as one JSON
// object each, the form every version of ztwizard reads.
//
//	go run ./bench/storegen -state DIR -records 100000
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"ztwizard/steps/state"
)

func main() {
	dir := flag.String("state", "", "the store to grow")
	records := flag.Int("records", 1000, "records to add")
	flag.Parse()
	if err := run(*dir, *records); err != nil {
		fmt.Fprintln(os.Stderr, "storegen:", err)
		os.Exit(1)
	}
}

func run(dir string, n int) error {
	s, err := state.Open(dir)
	if err != nil {
		return err
	}
	ix, err := s.Index()
	if err != nil {
		return err
	}
	var x509Rec, sshRec *state.Record
	for i := range ix.Records {
		switch ix.Records[i].Kind {
		case "x509-client":
			x509Rec = &ix.Records[i]
		case "ssh-user":
			sshRec = &ix.Records[i]
		}
	}
	if x509Rec == nil || sshRec == nil {
		return fmt.Errorf("%s: issue a client certificate and sign an SSH user key first", dir)
	}
	certPEM, err := os.ReadFile(s.Path(x509Rec.File))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(s.Path(strings.TrimSuffix(x509Rec.File, ".pem") + "-key.pem"))
	if err != nil {
		return err
	}
	sshCert, err := os.ReadFile(s.Path(sshRec.File))
	if err != nil {
		return err
	}
	audit, err := os.OpenFile(s.Path("audit.log"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer audit.Close()
	log := bufio.NewWriter(audit)
	now := time.Now().UTC()
	for i := range n {
		var r state.Record
		if i%2 == 0 {
			r = *x509Rec
			b := make([]byte, 16)
			rand.Read(b)
			b[0] &= 0x7f
			r.Serial = strings.TrimLeft(hex.EncodeToString(b), "0")
			r.File = path.Join(path.Dir(x509Rec.File), r.Serial+".pem")
			if err := os.WriteFile(s.Path(r.File), certPEM, 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(s.Path(strings.TrimSuffix(r.File, ".pem")+"-key.pem"), keyPEM, 0o600); err != nil {
				return err
			}
		} else {
			r = *sshRec
			r.Serial = strconv.FormatUint(ix.NextSSHSerial, 10)
			ix.NextSSHSerial++
			r.File = path.Join(path.Dir(sshRec.File), r.Serial+"-cert.pub")
			if err := os.WriteFile(s.Path(r.File), sshCert, 0o644); err != nil {
				return err
			}
		}
		ix.Records = append(ix.Records, r)
		action := map[bool]string{true: "issue", false: "sign"}[i%2 == 0]
		line, _ := json.Marshal(state.Event{Time: now, Action: action, Kind: r.Kind, Name: r.Name, Serial: r.Serial, NotAfter: r.NotAfter})
		fmt.Fprintf(log, "%s\n", line)
	}
	if err := log.Flush(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), append(data, '\n'), 0o600); err != nil {
		return err
	}
	var revoked []string
	for _, r := range ix.Records {
		if r.RevokedAt != nil {
			revoked = append(revoked, r.Kind+" "+r.Serial)
		}
	}
	mark := map[string]any{"crl_number": ix.CRLNumber, "krl_version": ix.KRLVersion,
		"next_ssh_serial": ix.NextSSHSerial, "records": len(ix.Records), "revoked": revoked}
	data, err = json.MarshalIndent(mark, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "counters.json"), append(data, '\n'), 0o600)
}
