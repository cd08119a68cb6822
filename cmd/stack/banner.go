package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/billfn/billfn/cmd/internal/localdev"
	"github.com/billfn/billfn/shared/auth"
)

// adminSubject is the user id of the printed admin token: the one make
// token signs for too, so both name the same caller (idempotency keys are
// scoped per caller).
const adminSubject = localdev.AdminSubject

// banner prints what a developer needs to start calling the system; its
// first line says whether every function is ready (notReady names those
// whose /_/ready did not answer 200 in time; a later line says when they do).
func (s *stack) banner(notReady []string) {
	gw := "http://" + s.cfg.GatewayAddr
	token, err := s.adminToken()
	if err != nil {
		s.log.printf("stack", "cannot sign a dev token: %v", err)
	}
	var b strings.Builder
	if len(notReady) == 0 {
		fmt.Fprintf(&b, "\nbillfn is ready — every function answers /_/ready; gateway %s (Kafka %s, kafka-trigger metrics %s)\n\n", gw, s.cfg.KafkaAddr, s.triggerMetrics())
	} else {
		fmt.Fprintf(&b, "\nbillfn is up but NOT READY: %s (see the log above; the gateway answers 503 for them) — a line says when they are; gateway %s (Kafka %s)\n\n",
			strings.Join(notReady, ", "), gw, s.cfg.KafkaAddr)
	}
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
		addr := strings.Join(f.addrs(), ",")
		if !f.deployed() {
			addr = "not running: " + f.skip
			trig = ""
		}
		fmt.Fprintf(&b, "  %-20s %-22s %s\n", f.name, addr, trig)
	}
	fmt.Fprintf(&b, "\nThe dev admin token (24 h, sub %s — make token prints the same admin; ROLE=, SUB= for others):\n\n", adminSubject)
	fmt.Fprintf(&b, "  export TOKEN=%s\n  export GW=%s/function\n", token, gw)
	if s.deployed("aggregate-report") {
		fmt.Fprintf(&b, "\nDashboard (the link's #token= fragment, which never reaches a server log, fills in the login form; press Sign in):\n\n  %s/function/aggregate-report/dashboard#token=%s\n", gw, token)
	}
	if s.mailpit != nil {
		fmt.Fprintf(&b, "\nEmails: every email the functions send (invoices, receipts, reminders) lands in Mailpit, never in a real mailbox:\n\n  http://%s   (web UI; API: /api/v1/messages; a message: /view/<ID>.html)\n", s.cfg.MailpitUIAddr)
	}
	fmt.Fprintf(&b, "\nThe gateway's /system API (OpenFaaS's, what faas-cli calls) needs basic auth, generated on the first start and kept in %s/basic-auth-user and basic-auth-password:\n\n  user %s  password %s\n",
		s.cfg.secretsDir(), s.secrets[basicAuthUser], s.secrets[basicAuthPassword])
	fmt.Fprintf(&b, "\nTry (the README's quick start goes on from here, safe to paste twice):\n\n  curl -s -u %s:%s %s/system/functions\n", s.secrets[basicAuthUser], s.secrets[basicAuthPassword], gw)
	if s.deployed("process-transaction") {
		fmt.Fprintf(&b, "  curl -s \"$GW/process-transaction/accounts?limit=5\" -H \"Authorization: Bearer $TOKEN\"\n")
	} else {
		for _, f := range s.functions {
			if f.deployed() {
				fmt.Fprintf(&b, "  curl -s %s/function/%s/_/ready\n", gw, f.name)
				break
			}
		}
	}
	fmt.Fprintf(&b, "\nfaas-cli works against this gateway (docs/platform.md, \"faas-cli against make run\"):\n\n  echo -n '%s' | faas-cli login -g %s -u %s --password-stdin\n  set -a; . %s; set +a; faas-cli deploy -f stack.yml -g %s\n  faas-cli list -v -g %s\n",
		s.secrets[basicAuthPassword], gw, s.secrets[basicAuthUser], s.cfg.envFile(), gw, gw)
	fmt.Fprintf(&b, "\nmake reset (after Ctrl-C) wipes the local state: database, Kafka data, secrets.\nCtrl-C stops everything.\n")
	for _, line := range strings.Split(b.String(), "\n") {
		s.log.line("stack", line)
	}
}

func (s *stack) deployed(name string) bool {
	for _, f := range s.functions {
		if f.name == name {
			return f.deployed()
		}
	}
	return false
}

// adminToken signs a 24-hour admin token the functions accept: the local
// stack's Ed25519 private key (bin/run/secrets/jwt-private-key), with the issuer and audience stack.yml gives them.
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
	signer, err := auth.SignerFor(auth.SignerConfig{Alg: "EdDSA", PrivateKey: s.secrets[jwtPrivateKey], Issuer: iss, Audience: aud})
	if err != nil {
		return "", err
	}
	return signer.Sign(adminSubject, auth.RoleAdmin, 24*time.Hour)
}

// triggerMetrics names the kafka-triggers' /metrics URLs.
func (s *stack) triggerMetrics() string {
	var urls []string
	for _, a := range s.triggerAddrs() {
		urls = append(urls, "http://"+a+"/metrics")
	}
	return strings.Join(urls, ", ")
}
