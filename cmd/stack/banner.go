package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
)

// adminSubject is the user id of the printed admin token.
const adminSubject = "00000000-0000-4000-8000-00000000ad01"

// banner prints what a developer needs to start calling the system.
func (s *stack) banner() {
	gw := "http://" + s.cfg.GatewayAddr
	token, err := s.adminToken()
	if err != nil {
		s.log.printf("stack", "cannot sign a dev token: %v", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nbillfn is up — gateway %s (Kafka %s, kafka-trigger metrics http://%s/metrics)\n\n", gw, s.cfg.KafkaAddr, s.cfg.TriggerAddr)
	fmt.Fprintf(&b, "  %-20s %-22s %s\n", "function", "address", "triggers")
	for _, f := range s.functions {
		sub, _ := f.spec.Subscription()
		trig := strings.Join(sub.Topics, ",")
		if sub.Schedule != "" {
			trig += fmt.Sprintf(" + ticks every %s", s.cfg.TickEvery)
		}
		if sub.BatchSize > 1 {
			trig += fmt.Sprintf(" (batches of %d", sub.BatchSize)
			if sub.BatchWait > 0 {
				trig += fmt.Sprintf(", waits ≤ %s", sub.BatchWait)
			}
			trig += ")"
		}
		addr := f.addr
		if f.proc == nil {
			addr = "not running: " + f.skip
			trig = ""
		}
		fmt.Fprintf(&b, "  %-20s %-22s %s\n", f.name, addr, trig)
	}
	fmt.Fprintf(&b, "\nA dev admin token (24 h, sub %s; make token prints others):\n\n  export TOKEN=%s\n", adminSubject, token)
	fmt.Fprintf(&b, "\nTry:\n\n  curl -s %s/system/functions\n", gw)
	if s.deployed("process-transaction") {
		fmt.Fprintf(&b, "  curl -s -X POST %s/function/process-transaction/accounts -H \"Authorization: Bearer $TOKEN\" \\\n"+
			"       -H 'Content-Type: application/json' -H 'Idempotency-Key: %s' \\\n"+
			"       -d '{\"currency\":\"USD\",\"user_id\":\"%s\"}'\n", gw, uuid.NewString(), adminSubject)
		fmt.Fprintf(&b, "  echo '{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/kcat\",\"type\":\"billfn.transaction.requested\",\"datacontenttype\":\"application/json\",\"data\":{\"from_account_number\":\"SYS-EXTERNAL-USD\",\"to_account_number\":\"SYS-CLEARING-USD\",\"amount\":1050,\"currency\":\"USD\"}}' \\\n"+
			"    | kcat -P -b %s -t transaction-events -k demo -H content-type=application/cloudevents+json\n", uuid.NewString(), s.cfg.KafkaAddr)
	} else {
		for _, f := range s.functions {
			if f.proc != nil {
				fmt.Fprintf(&b, "  curl -s %s/function/%s/_/ready\n", gw, f.name)
				break
			}
		}
	}
	fmt.Fprintf(&b, "\nCtrl-C stops everything.\n")
	for _, line := range strings.Split(b.String(), "\n") {
		s.log.line("stack", line)
	}
}

func (s *stack) deployed(name string) bool {
	for _, f := range s.functions {
		if f.name == name {
			return f.proc != nil
		}
	}
	return false
}

// adminToken signs a 24-hour admin token the functions accept: the local
// JWT secret, with the issuer and audience stack.yml gives them.
func (s *stack) adminToken() (string, error) {
	iss, aud := "billfn", "billfn"
	for _, name := range s.st.Names() {
		env := s.st.Functions[name].Environment
		if v := env["JWT_ISSUER"]; v != "" {
			iss = v
		}
		if v := env["JWT_AUDIENCE"]; v != "" {
			aud = v
		}
		break
	}
	return auth.NewHS256Signer(s.secrets["jwt-secret"], iss, aud).Sign(adminSubject, auth.RoleAdmin, 24*time.Hour)
}
