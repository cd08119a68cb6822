#!/usr/bin/env python3
# Runs a private billfn stack on billfn_d with log_statement=all, drives
# loadgen payments through it, and marks the timed phase in the server log.
import subprocess, os, sys, time, signal, re, json
root = sys.argv[1]; n = sys.argv[2] if len(sys.argv) > 2 else "400"
bindir = "/tmp/D/bin"; run = "/tmp/D/run"
db = "billfn_d"
def psql(sql, d="postgres"):
    return subprocess.run(["psql","-h","127.0.0.1","-U","postgres","-d",d,"-Atqc",sql],capture_output=True,text=True,check=True).stdout
subprocess.run(["rm","-rf",run],check=True)
psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
psql(f"CREATE DATABASE {db}")
psql(f"ALTER DATABASE {db} SET log_statement = 'all'")
env = dict(os.environ, BILLFN_GATEWAY_ADDR="127.0.0.1:38080", BILLFN_KAFKA_ADDR="127.0.0.1:38092", BILLFN_TRIGGER_ADDR="127.0.0.1:38090",
  STRIPE_MOCK_ADDR="127.0.0.1:38111", MAILPIT_SMTP_ADDR="127.0.0.1:38025", MAILPIT_UI_ADDR="127.0.0.1:38026", BILLFN_FUNCTION_PORT="38081",
  BILLFN_RUN_DIR=run, BILLFN_STACK_ID="D-trace", LOG_LEVEL="warn", RATE_LIMIT="off", BILLFN_OTLP_ENDPOINT="none",
  DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}?sslmode=disable", REDIS_PREFIX="billfn-d:")
log = open("/tmp/D/stack.log","w")
st = subprocess.Popen([bindir+"/stack"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
for line in st.stdout:
    log.write(line)
    if "Ctrl-C stops everything" in line: break
print("stack up", flush=True)
lg = subprocess.Popen([bindir+"/loadgen","payments","-c","16","-n",n,"-gateway","http://127.0.0.1:38080","-secrets",run+"/secrets","-sync","-q","-json","/tmp/D/load.json"],
  cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open("/tmp/D/loadgen.err","w"), text=True)
def wait(phase):
    for line in lg.stdout:
        if line.strip() == "loadgen: "+phase: return
    raise SystemExit("loadgen ended before "+phase)
wait("start")
time.sleep(8)  # the setup's events settle
# who is who: backend pid -> client port -> process
acts = psql(f"SELECT pid, client_port FROM pg_stat_activity WHERE datname = '{db}'")
psql("SELECT 'D-MARK-START'", db)
lg.stdin.write("\n"); lg.stdin.flush()
wait("end")
time.sleep(10)  # consumers and relays finish
psql("SELECT 'D-MARK-END'", db)
acts += psql(f"SELECT pid, client_port FROM pg_stat_activity WHERE datname = '{db}'")
ss = subprocess.run(["ss","-tnpH","state","established","dst","127.0.0.1:5432"],capture_output=True,text=True).stdout
lg.stdin.write("\n"); lg.stdin.flush(); lg.wait()
ports = {}
for l in ss.splitlines():
    m = re.search(r'127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:5432.*users:\(\("([^"]+)",pid=(\d+)', l)
    if m: ports[m.group(1)] = m.group(2)+"/"+m.group(3)
pids = {}
for l in acts.splitlines():
    pid, port = l.split("|")
    if port: pids[pid] = ports.get(port, "?")
json.dump(pids, open("/tmp/D/pids.json","w"), indent=1)
os.killpg(st.pid, signal.SIGINT); st.wait(timeout=30)
print("done", flush=True)
