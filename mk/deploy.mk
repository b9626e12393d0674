# mk/deploy.mk: checks of what a platform team installs (deploy/): the Prometheus rules
# (promtool check + unit tests), the Helm chart (helm lint, helm template with the default and
# a fully secured configuration, kubeconform on the result) and the dashboard's JSON.
# Included by the top-level Makefile; `make lint` runs it. Tools are installed on first use:
# promtool from apt (Debian's prometheus package), helm and kubeconform built from the Go
# module proxy at pinned versions into .cache/tools (compiling helm takes a few minutes once).

DEPLOY_TOOLS    := $(CURDIR)/.cache/tools
HELM_VER        := v4.3.2
KUBECONFORM_VER := v0.8.0
HELM            := $(DEPLOY_TOOLS)/helm-$(HELM_VER)
KUBECONFORM     := $(DEPLOY_TOOLS)/kubeconform-$(KUBECONFORM_VER)
CHART           := deploy/helm/catalog
K8S_VERSION     := 1.30.0
# A configuration that turns every secret and TLS branch of the chart on.
CHART_SECURED   := --set secrets.adminToken.secretName=adm --set secrets.kafkaSASLPassword.secretName=sasl \
  --set config.KAFKA_SASL_MECHANISM=SCRAM-SHA-512 --set config.KAFKA_SASL_USERNAME=catalog \
  --set secrets.elasticsearchAPIKey.secretName=es-key --set tls.kafka.secretName=kafka-tls \
  --set tls.kafka.certKey=tls.crt --set tls.kafka.keyKey=tls.key --set tls.elasticsearch.secretName=es-ca \
  --set tls.grpc.secretName=grpc-tls --set tls.grpc.clientCAKey=ca.crt --set tls.grpc.caKey=ca.crt \
  --set tls.http.secretName=http-tls --set serviceMonitor.enabled=true

.PHONY: deploy-lint
lint: deploy-lint
deploy-lint: $(HELM) ## promtool check/test of the alert rules, helm lint/template (+kubeconform) of the chart
	@if ! command -v promtool >/dev/null 2>&1; then \
	  echo "deploy-lint: installing promtool (apt-get install prometheus)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus) >/dev/null 2>&1 \
	    || { echo "deploy-lint: cannot install promtool: apt-get install prometheus"; exit 1; }; \
	fi
	promtool check rules deploy/prometheus/catalog-rules.yaml
	promtool test rules deploy/prometheus/*test*.yaml
	@python3 -c 'import json,sys; json.load(open(sys.argv[1]))' deploy/grafana/catalog.json || { echo "deploy/grafana/catalog.json is not valid JSON"; exit 1; }
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) $(CHART_SECURED)
	@mkdir -p .cache/chart
	$(HELM) template catalog $(CHART) > .cache/chart/default.yaml
	$(HELM) template catalog $(CHART) $(CHART_SECURED) > .cache/chart/secured.yaml
	@! $(HELM) template catalog $(CHART) --set config.KAFKA_SASL_PASSWORD=x >/dev/null 2>&1 \
	  || { echo "deploy-lint: the chart accepted a credential in config"; exit 1; }
	@$(MAKE) --no-print-directory kubeconform

# kubeconform needs the Kubernetes JSON schemas, fetched from GitHub. Where they cannot be
# reached (this project's CI machines reach only package registries) it says so and stops
# there: helm lint --strict and helm template above still check the chart. It is built only
# when the schemas can be fetched.
.PHONY: kubeconform
kubeconform:
	@if curl -sfI --max-time 10 https://raw.githubusercontent.com/yannh/kubernetes-json-schema/master/v$(K8S_VERSION)-standalone-strict/deployment-apps-v1.json >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory $(KUBECONFORM) && \
	  $(KUBECONFORM) -strict -summary -kubernetes-version $(K8S_VERSION) -skip ServiceMonitor -cache .cache/chart .cache/chart/default.yaml .cache/chart/secured.yaml; \
	else \
	  echo "kubeconform: skipped, the schema registry (raw.githubusercontent.com) is unreachable from here"; \
	fi

$(HELM):
	@mkdir -p $(DEPLOY_TOOLS)
	@echo "building helm $(HELM_VER) from the Go module proxy into .cache/tools (once; a few minutes)"
	GOFLAGS=-mod=mod GOBIN=$(DEPLOY_TOOLS)/helm-build $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VER)
	mv $(DEPLOY_TOOLS)/helm-build/helm $@ && rmdir $(DEPLOY_TOOLS)/helm-build

$(KUBECONFORM):
	@mkdir -p $(DEPLOY_TOOLS)
	GOFLAGS=-mod=mod GOBIN=$(DEPLOY_TOOLS)/kubeconform-build $(GO) install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VER)
	mv $(DEPLOY_TOOLS)/kubeconform-build/kubeconform $@ && rmdir $(DEPLOY_TOOLS)/kubeconform-build
