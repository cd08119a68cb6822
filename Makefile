# billfn — `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
PKGS  ?= ./...
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/billfn?sslmode=disable

# Images and the local kind cluster (kind-config.yaml).
REGISTRY         ?= localhost:5001
TAG              ?= latest
KIND_CLUSTER     ?= billfn
KIND_REGISTRY    ?= kind-registry
KIND_REG_PORT    ?= 5001
OPENFAAS_URL     ?= http://127.0.0.1:8080
OPENFAAS_NODEPORT ?= 31112
KOURIER_NODEPORT ?= 31080
KNATIVE_VERSION  ?= 1.23.0
CMD_IMAGES       := kafka-trigger migrate
# The cluster's secrets: knative/infra/secrets.env is only the template
# (placeholders); make deploy-secrets generates the values into the
# untracked DEPLOY_SECRETS (one file per secret) and the JWT private key
# beside it, which is never applied to the cluster.
SECRETS_TEMPLATE := knative/infra/secrets.env
DEPLOY_SECRETS   := bin/deploy/secrets

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

services: ## start PostgreSQL and Redis when they are not running (installs them when absent)
	@.ci/services.sh

fmt-check: ## fail when gofmt would change a file
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

tidy-check: ## fail when go mod tidy would change go.mod or go.sum (go mod tidy -diff; offline once the module cache holds the module graph)
	@out=$$($(GO) mod tidy -diff 2>&1); rc=$$?; \
	if [ $$rc -ne 0 ]; then \
	  echo "$$out"; \
	  if printf '%s\n' "$$out" | grep -q '^diff '; then echo "go.mod/go.sum are not tidy: run go mod tidy and commit both"; \
	  else echo "tidy-check could not run go mod tidy (offline with modules missing from the cache?); run it once online"; fi; \
	  exit 1; \
	fi

vet: ## go vet (also the fault test, which builds only with -tags faults)
	$(GO) vet $(PKGS)
	$(GO) vet -tags faults ./cmd/stack

tools: ## find or build stripe-mock, Mailpit and Jaeger at their pinned versions, outside billfn's go.mod (minutes the first time)
	$(GO) run ./cmd/stack tools

test: services tools fmt-check tidy-check vet ## everything CI checks: gofmt, go mod tidy, go vet, go test -race against real Postgres, Redis and kfake
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

fuzz: services ## run every fuzz target for FUZZTIME each (default 20s)
	@grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do \
	  dir=$$(dirname $$f); \
	  for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | sed 's/func //'); do \
	    echo "== $$dir $$fn"; $(GO) test $$dir -run='^$$' -fuzz="^$$fn$$" -fuzztime=$${FUZZTIME:-20s} || exit 1; \
	  done; \
	done

run: ## the whole system locally: every function, gateway :8080, kfake :9092, kafka-trigger (Ctrl-C stops)
	@.ci/services.sh --cli
	@mkdir -p bin
	$(GO) build -o bin/stack ./cmd/stack
	bin/stack

observe: ## Jaeger (query API and UI http://127.0.0.1:16686 — the UI needs jaeger-ui, see docs/observability.md; OTLP :4317/:4318) and Prometheus (http://127.0.0.1:9090) beside make run, in a second terminal (Ctrl-C stops them)
	@mkdir -p bin
	$(GO) build -o bin/stack ./cmd/stack
	bin/stack observe

bench: services ## the standard benchmarks + pgbench TPC-B in one run → docs/benchmarks.md (a few minutes)
	$(GO) run ./cmd/bench

e2e: services ## the system tests of the local stack alone: end to end, the four flows, the attacks (make test runs them too)
	$(GO) test -race -count=1 -v -run '^(TestLocalStackEndToEnd|TestFlow.*|TestAttacks)$$' ./cmd/stack

faults: services ## faults during a mixed load on a local stack (~2 min; not in make test): kill -9, Kafka, Postgres, Redis, events twice
	$(GO) test -tags faults -race -count=1 -v -timeout 15m -run '^TestFaultsDuringMixedLoad$$' ./cmd/stack

build: ## build every binary into bin/
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/... $$(ls -d ./functions/*/ 2>/dev/null)

migrate: services ## apply migrations to DATABASE_URL (creates the database)
	$(GO) run ./cmd/migrate up

token: ## print a dev JWT: the banner's admin, the same each call (ROLE=admin|service|customer, SUB=<uuid> overrides)
	@run=$${BILLFN_RUN_DIR:-bin/run}; \
	if [ -z "$$SECRETS_DIR" ] && [ -d "$$run/secrets" ]; then export SECRETS_DIR="$$run/secrets"; fi; \
	$(GO) run ./cmd/devtoken -role $${ROLE:-admin} $${SUB:+-sub $$SUB}

reset: ## wipe the local stack's state after a y/N prompt (FORCE=1: no prompt): database, Kafka data, secrets, Redis keys, mailboxes
	@mkdir -p bin
	@$(GO) build -o bin/stack ./cmd/stack
	@bin/stack reset $(if $(filter 1 y yes true,$(FORCE)),-force)

images: ## build and push every image to REGISTRY (faas-cli for the functions, docker for kafka-trigger and migrate)
	REGISTRY=$(REGISTRY) TAG=$(TAG) faas-cli build -f stack.yml
	REGISTRY=$(REGISTRY) TAG=$(TAG) faas-cli push -f stack.yml
	@for c in $(CMD_IMAGES); do \
	  docker build --build-arg DIR=cmd --build-arg FUNCTION=$$c -t $(REGISTRY)/billfn-$$c:$(TAG) . && \
	  docker push $(REGISTRY)/billfn-$$c:$(TAG) || exit 1; \
	done

kind-up: ## a kind cluster from kind-config.yaml with a local registry on localhost:5001
	@command -v docker >/dev/null && command -v kind >/dev/null && command -v kubectl >/dev/null || \
	  { echo "kind-up needs docker, kind and kubectl"; exit 1; }
	@if [ "$$(docker inspect -f '{{.State.Running}}' $(KIND_REGISTRY) 2>/dev/null)" != true ]; then \
	  docker run -d --restart=always -p 127.0.0.1:$(KIND_REG_PORT):5000 --network bridge --name $(KIND_REGISTRY) registry:2; fi
	@kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --name $(KIND_CLUSTER) --config kind-config.yaml
	@for node in $$(kind get nodes --name $(KIND_CLUSTER)); do \
	  docker exec $$node mkdir -p /etc/containerd/certs.d/localhost:$(KIND_REG_PORT); \
	  printf '[host."http://$(KIND_REGISTRY):5000"]\n' | docker exec -i $$node cp /dev/stdin /etc/containerd/certs.d/localhost:$(KIND_REG_PORT)/hosts.toml; \
	done
	@docker network connect kind $(KIND_REGISTRY) 2>/dev/null || true
	@printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local-registry-hosting\n  namespace: kube-public\ndata:\n  localRegistryHosting.v1: |\n    host: "localhost:$(KIND_REG_PORT)"\n' | kubectl apply -f -
	@echo "kind cluster $(KIND_CLUSTER) is up; registry localhost:$(KIND_REG_PORT)"

# Strimzi watches namespace billfn, where knative/infra puts Kafka.
strimzi:
	kubectl create namespace billfn --dry-run=client -o yaml | kubectl apply -f -
	kubectl create -f 'https://strimzi.io/install/latest?namespace=billfn' -n billfn 2>/dev/null || \
	  kubectl replace -f 'https://strimzi.io/install/latest?namespace=billfn' -n billfn
	kubectl -n billfn rollout status deployment/strimzi-cluster-operator --timeout=300s

deploy-secrets: ## generate the cluster's secrets into bin/deploy/secrets (untracked; kept across runs): Ed25519 key pair, random keys, a service token
	@$(GO) run ./cmd/devtoken -cluster-secrets $(DEPLOY_SECRETS) -template $(SECRETS_TEMPLATE)
	@# Refuse to deploy a placeholder (<...>) or an empty value.
	@for name in $$(grep -v '^#' $(SECRETS_TEMPLATE) | cut -d= -f1); do \
	  f=$(DEPLOY_SECRETS)/$$name; \
	  if [ ! -s "$$f" ] || grep -q '<[^<>]*>' "$$f"; then echo "refusing to deploy: $$f is missing or still a placeholder"; exit 1; fi; \
	done
	@kubectl create namespace billfn --dry-run=client -o yaml | kubectl apply -f - >/dev/null
	@kubectl -n billfn create secret generic billfn-secrets --from-file=$(DEPLOY_SECRETS) --dry-run=client -o yaml | kubectl apply -f - >/dev/null
	@# The KafkaSources and the KafkaSink log in as the kafka-trigger principal (kafka-acls.yaml).
	@d=bin/deploy/kafka-delivery; mkdir -p $$d && printf SASL_PLAINTEXT >$$d/protocol && printf SCRAM-SHA-512 >$$d/sasl.mechanism && \
	  printf kafka-trigger >$$d/user && cp $(DEPLOY_SECRETS)/kafka-password-kafka-trigger $$d/password && \
	  kubectl -n billfn create secret generic billfn-kafka-delivery --from-file=$$d --dry-run=client -o yaml | kubectl apply -f - >/dev/null
	@echo "billfn-secrets applied from $(DEPLOY_SECRETS); tokens for the cluster: SECRETS_DIR=bin/deploy make -s token"

deploy-openfaas: strimzi deploy-secrets ## OpenFaaS CE + billfn on the kind cluster: infra, secrets, kafka-trigger, faas-cli deploy
	helm repo add openfaas https://openfaas.github.io/faas-netes/ >/dev/null && helm repo update openfaas >/dev/null
	kubectl apply -f https://raw.githubusercontent.com/openfaas/faas-netes/master/namespaces.yml
	helm upgrade --install openfaas openfaas/openfaas --namespace openfaas \
	  --set functionNamespace=openfaas-fn --set generateBasicAuth=true \
	  --set serviceType=NodePort --set gateway.nodePort=$(OPENFAAS_NODEPORT)
	kubectl -n openfaas rollout status deployment/gateway --timeout=300s
	@for f in $(DEPLOY_SECRETS)/*; do \
	  name=$$(basename $$f); \
	  kubectl -n openfaas-fn create secret generic "$$name" --from-file="$$name=$$f" --dry-run=client -o yaml | kubectl apply -f - >/dev/null; \
	  if [ "$$name" = event-signing-key ] || [ "$$name" = kafka-password-kafka-trigger ]; then \
	    kubectl -n openfaas create secret generic "$$name" --from-file="$$name=$$f" --dry-run=client -o yaml | kubectl apply -f - >/dev/null; fi; \
	done
	kubectl apply -k knative/openfaas
	kubectl -n billfn wait kafka/billfn --for=condition=Ready --timeout=600s
	kubectl -n billfn wait job/billfn-migrate --for=condition=Complete --timeout=300s
	kubectl -n openfaas get secret basic-auth -o jsonpath='{.data.basic-auth-password}' | base64 -d | \
	  faas-cli login --username admin --password-stdin --gateway $(OPENFAAS_URL)
	REGISTRY=$(REGISTRY) TAG=$(TAG) faas-cli deploy -f stack.yml --gateway $(OPENFAAS_URL)
	@echo "OpenFaaS gateway: $(OPENFAAS_URL)  (faas-cli list; curl $(OPENFAAS_URL)/function/<name>/...)"

deploy-knative: strimzi deploy-secrets ## Knative Serving (kourier) + Eventing + KafkaSource on the kind cluster, then kubectl apply -k knative
	kubectl apply -f https://github.com/knative/serving/releases/download/knative-v$(KNATIVE_VERSION)/serving-crds.yaml
	kubectl apply -f https://github.com/knative/serving/releases/download/knative-v$(KNATIVE_VERSION)/serving-core.yaml
	kubectl apply -f https://github.com/knative-extensions/net-kourier/releases/download/knative-v$(KNATIVE_VERSION)/kourier.yaml
	kubectl patch configmap/config-network -n knative-serving --type merge -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
	kubectl patch configmap/config-domain -n knative-serving --type merge -p '{"data":{"127.0.0.1.sslip.io":""}}'
	kubectl patch configmap/config-deployment -n knative-serving --type merge -p '{"data":{"registries-skipping-tag-resolving":"kind.local,ko.local,dev.local,localhost:$(KIND_REG_PORT)"}}'
	kubectl patch service/kourier -n kourier-system -p '{"spec":{"type":"NodePort","ports":[{"name":"http2","port":80,"nodePort":$(KOURIER_NODEPORT)}]}}'
	kubectl apply -f https://github.com/knative/eventing/releases/download/knative-v$(KNATIVE_VERSION)/eventing-crds.yaml
	kubectl apply -f https://github.com/knative/eventing/releases/download/knative-v$(KNATIVE_VERSION)/eventing-core.yaml
	kubectl apply -f https://github.com/knative-extensions/eventing-kafka-broker/releases/download/knative-v$(KNATIVE_VERSION)/eventing-kafka-controller.yaml
	kubectl apply -f https://github.com/knative-extensions/eventing-kafka-broker/releases/download/knative-v$(KNATIVE_VERSION)/eventing-kafka-source.yaml
	kubectl apply -f https://github.com/knative-extensions/eventing-kafka-broker/releases/download/knative-v$(KNATIVE_VERSION)/eventing-kafka-sink.yaml
	kubectl -n knative-serving rollout status deployment/controller --timeout=300s
	kubectl -n knative-eventing rollout status deployment/kafka-controller --timeout=300s
	kubectl apply -k knative
	kubectl -n billfn wait kafka/billfn --for=condition=Ready --timeout=600s
	kubectl -n billfn wait job/billfn-migrate --for=condition=Complete --timeout=300s
	kubectl -n billfn wait ksvc --all --for=condition=Ready --timeout=300s
	@echo "Knative: curl http://<name>.billfn.127.0.0.1.sslip.io/...  (kubectl -n billfn get ksvc)"

# clean keeps bin/run's state (Kafka's data, secrets) so it never falls out of
# step with the database, which clean does not touch: make reset wipes both.
clean: ## remove build output (bin/ but the local stack's state in bin/run, faas-cli's build/); make reset wipes the state
	@if [ -d bin ]; then find bin -mindepth 1 -maxdepth 1 ! -name run -exec rm -rf {} +; rm -rf bin/run/bin; fi
	rm -rf build

.PHONY: help services fmt-check tidy-check vet tools test fuzz run observe bench e2e faults build migrate token reset images kind-up strimzi deploy-secrets deploy-openfaas deploy-knative clean
