import json, sys
# (issue 20) The per-payment statement list of docs/capture-payment.md, "Where the commits come from".
b=json.load(open(sys.argv[1])); a=json.load(open(sys.argv[2]))
desc={
 "capture-payment\t[standalone] SELECT id, user_id, currency, status, version FROM paymen": ("the account's facts (`payment_accounts`, AuthorizeAccount), outside any transaction, each request","—"),
 "capture-payment\t[group, sync] idempotency claims": ("the Idempotency-Key claims of concurrent requests (one group commit)","yes"),
 "capture-payment\t[group, async] intents + sandbox books": ("the intents (payment + first attempt) and the sandbox's intents, asynchronous group commits","yes"),
 "capture-payment\t[group, sync] finishing records (payment+attempt, outbox, answer) [+claims]": ("the finishing records (payment and attempt if at version, outbox events, stored answer; claims joining), one synchronous group commit","yes"),
 "capture-payment\toutbox publish (SELECT FOR UPDATE + DELETE)": ("outbox publish pass (SELECT … FOR UPDATE SKIP LOCKED, DELETE)","yes"),
 "capture-payment\toutbox publish that found nothing": ("outbox publish pass that found nothing","—"),
 "process-transac\tposting group commit (transfers, postings, accounts, outbox)": ("the capture's posting (transaction.requested, self-handled): accounts read, transfer, postings, balances, outbox, one group commit","yes"),
 "process-transac\toutbox publish (SELECT FOR UPDATE + DELETE)": ("outbox publish pass (transaction.posted)","yes"),
 "process-transac\toutbox publish that found nothing": ("outbox publish pass that found nothing","—"),
 "handle-webhook\tReceiver.Wanted: endpoints + payment map, one pipelined read": ("Receiver.Wanted: the enabled endpoints' types and the payment map, one pipelined read per delivery","—"),
 "handle-webhook\ttransaction learning the payment (processed_events, webhook_payment_refs)": ("learning the payment (payment.created): processed_events, endpoints read, webhook_payment_refs, parked webhooks looked up","yes"),
 "handle-webhook\tsender: SendDue (deliveries due)": ("the sender woken: deliveries due (none: no endpoint)","—"),
 "handle-webhook\tsender: NextDue (next retry)": ("the sender woken: the next retry","—"),
 "handle-webhook\toutbox publish that found nothing": ("outbox publish pass that found nothing (kicked after every delivery)","—"),
 "aggregate-repor\tbatch transaction (processed_events + rollups)": ("its batch transaction (processed_events, report events, rollups, recon, payments, changes)","yes"),
 "generate-invoic\toutbox publish that found nothing": ("outbox publish pass that found nothing (kicked after a delivery)","—"),
 "stack\t[standalone] UPDATE gateway_async_calls SET owner = $1, leased_until =": ("the gateway's async-call queue lease (a poll, not per payment)","—"),
}
rows=[]; tb=ta=0
for k,(d,w) in desc.items():
    proc=k.split("\t")[0].replace("aggregate-repor","aggregate-report").replace("process-transac","process-transaction").replace("generate-invoic","generate-invoice").replace("stack","gateway (cmd/stack)")
    rows.append(f"| {proc} | {d} | {w} | {b.get(k,0):.2f} | {a.get(k,0):.2f} |")
tb=sum(v for v in b.values()); ta=sum(v for v in a.values())
# exclude pings
tb-=sum(v for k,v in b.items() if "ping" in k); ta-=sum(v for k,v in a.items() if "ping" in k)
rows.append(f"| **all** | every commit (read-only ones included, pings left out) | | **{tb:.2f}** | **{ta:.2f}** |")
print("\n".join(rows))
