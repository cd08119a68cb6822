import re, json, sys, collections, os
# (issue 20) The per-payment statement list of docs/capture-payment.md, "Where the commits come from".
L=os.environ.get("PGLOG","/var/log/postgresql/postgresql-15-main.log")
pids=json.load(open(os.environ.get("PIDS","/tmp/D/pids.json"))); n=float(sys.argv[1]) if len(sys.argv)>1 else 400
lines=open(L,errors="replace").read().split("\n")
start=[i for i,l in enumerate(lines) if "D-MARK-START" in l][-1]; end=[i for i,l in enumerate(lines) if "D-MARK-END" in l][-1]
hdr=re.compile(r'^\S+ \S+ UTC \[(\d+)\] (\S+)@(\S+) (LOG|DETAIL|ERROR|STATEMENT):\s+(.*)$')
stmts=[]; cur=None
for l in lines[start+1:end]:
    m=hdr.match(l)
    if m:
        if cur: stmts.append(cur); cur=None
        pid,u,db,kind,msg=m.groups()
        if db!="billfn_d" or kind!="LOG": continue
        mm=re.match(r'(statement|execute [^:]*):\s*(.*)',msg)
        if mm: cur=[pid,mm.group(1).split()[0],mm.group(2)]
    elif cur and (l.startswith("\t") or l.startswith(" ")): cur[2]+=" "+l.strip()
if cur: stmts.append(cur)
c=collections.Counter()
for pid,k,sql in stmts:
    proc=pids.get(pid,"?"+pid).split("/")[0]
    s=re.sub(r'\s+',' ',sql).strip()[:110]
    c[(proc,s)]+=1
for (proc,s),v in sorted(c.items(), key=lambda x:(x[0][0],-x[1])):
    print(f"{v/n:6.3f} {v:5d} {proc:16s} {s}")
print("\n# transactions by shape")
bypid=collections.defaultdict(list)
for pid,k,sql in stmts: bypid[pid].append(re.sub(r'\s+',' ',sql).strip())
shapes=collections.Counter()
def short(s):
    s=s[:60]
    return s
for pid,seq in bypid.items():
    proc=pids.get(pid,"?"+pid).split("/")[0]
    cur=None; pend_async=False
    for s in seq:
        low=s.lower()
        if low in ("begin","begin isolation level read committed") or low.startswith("begin"):
            cur=[]; continue
        if low in ("commit","rollback"):
            shapes[(proc, " | ".join(cur or [])+(" [rollback]" if low=="rollback" else ""))]+=1; cur=None; continue
        if cur is not None: cur.append(short(s)); continue
        if "set_config('synchronous_commit'" in s: pend_async=True; continue
        if s.startswith("SELECT gateway, gateway_payment_id FROM webhook_payment_refs"): continue  # pipelined after the endpoints' read: one implicit transaction
        shapes[(proc, ("[async] " if pend_async else "[standalone] ")+short(s))]+=1; pend_async=False
for (proc,s),v in sorted(shapes.items(), key=lambda x:(x[0][0],-x[1])):
    print(f"{v/n:6.3f} {v:5d} {proc:16s} {s}")
print("\n# commits per payment by process and kind")
kinds=collections.Counter()
def kind(proc,s):
    if "ping" in s: return None
    if s.startswith("SELECT id, topic, key, payload FROM outbox") and "DELETE" in s: return "outbox publish (SELECT FOR UPDATE + DELETE)"
    if s.startswith("SELECT id, topic, key, payload FROM outbox"): return "outbox publish that found nothing"
    return s[:70]
for (proc,s),v in shapes.items():
    k=kind(proc,s)
    if k is None: continue
    if proc=="capture-payment":
        if "idempotency_keys AS k" in s and "UPDATE payments" not in s.split("|")[0] and "WITH pay" not in s: k="[group, sync] idempotency claims"
        elif "WITH pay AS" in s or ("idempotency_keys AS k" in s and "WITH pay" in s): k="[group, sync] finishing records (payment+attempt, outbox, answer) [+claims]"
        elif "set_config" in s and ("sandbox_intents" in s or "INSERT INTO payments" in s): k="[group, async] intents + sandbox books"
    if proc=="aggregate-repor" and "processed_events" in s: k="batch transaction (processed_events + rollups)"
    if proc=="handle-webhook" and s.startswith("[standalone] SELECT events FROM webhook_endpoints"): k="Receiver.Wanted: endpoints + payment map, one pipelined read"
    if proc=="handle-webhook" and "WITH due" in s: k="sender: SendDue (deliveries due)"
    if proc=="handle-webhook" and "SELECT min(greatest" in s: k="sender: NextDue (next retry)"
    if proc=="handle-webhook" and "processed_events" in s: k="transaction learning the payment (processed_events, webhook_payment_refs)"
    if proc=="process-transac" and "INSERT INTO transfers" in s: k="posting group commit (transfers, postings, accounts, outbox)"
    kinds[(proc,k)]+=v
tot=0
for (proc,k),v in sorted(kinds.items(), key=lambda x:(x[0][0],-x[1])):
    tot+=v
    if v/n>=0.01: print(f"{v/n:6.3f} {proc:16s} {k}")
print(f"total {tot/n:.3f} commits per payment")
if len(sys.argv)>2:
    json.dump({f"{p}\t{k}":v/n for (p,k),v in kinds.items()}, open(sys.argv[2],"w"), indent=1)
