"""CloudWatch dashboard and alarms: queue age (normal and high priority), DLQ depth, failed deliveries and agent
errors, Lambda errors."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from infra import naming
from infra.config import DeploymentConfig
from infra.messaging import RuntimeQueue

METRIC_NAMESPACE = "SdAsync"
AGENT_ERRORS_METRIC = "QueueAgentErrors"
_PERIOD = Duration.minutes(5)


@dataclass(frozen=True)
class ObservedResources:
    config: DeploymentConfig
    key: kms.IKey
    queues: list[RuntimeQueue]
    topics: dict[str, sns.ITopic]
    functions: dict[str, lambda_.IFunction]
    api: apigw.RestApi
    # Container Insights' application log group (created beside the CloudWatch add-on, infra/cluster.py).
    application_log_group: logs.ILogGroup


class Observability(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, observed: ObservedResources) -> None:
        super().__init__(scope, construct_id)
        config = observed.config
        self.alarm_topic = sns.Topic(
            self,
            "AlarmTopic",
            topic_name=naming.alarms_topic(config.stack_name),
            master_key=observed.key,
            enforce_ssl=True,
        )
        if config.observability.alarm_email:
            self.alarm_topic.add_subscription(subs.EmailSubscription(config.observability.alarm_email))
        self.alarms: list[cw.Alarm] = []
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{config.stack_name}-overview")
        self._queues(observed)
        self._deliveries(observed)
        self._agent_errors(observed)
        self._api(observed)
        action = cw_actions.SnsAction(self.alarm_topic)
        for alarm in self.alarms:
            alarm.add_alarm_action(action)

    def _alarm(self, construct_id: str, metric: cw.Metric, threshold: float, description: str) -> cw.Alarm:
        alarm = metric.create_alarm(
            self,
            construct_id,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        self.alarms.append(alarm)
        return alarm

    def _queues(self, observed: ObservedResources) -> None:
        limit = observed.config.observability.oldest_message_alarm_seconds
        for rq in observed.queues:
            name = rq.runtime.name
            widgets: dict[str, list[cw.IMetric]] = {"depth": [], "age": []}
            # The normal queue keeps its construct ids; the high-priority one gets its own alarm (its tasks wait
            # only for a free GPU, so age there is the first sign of missing capacity).
            for label, queue, alarm_id in (
                ("normal", rq.queue, f"OldestMessage-{name}"),
                ("high", rq.high_queue, f"OldestHighMessage-{name}"),
            ):
                age = queue.metric_approximate_age_of_oldest_message(period=_PERIOD, statistic="Maximum")
                self._alarm(
                    alarm_id,
                    age,
                    limit,
                    f"Runtime {name}: a {label}-priority task has waited {limit}s or more "
                    "(no capacity, or workers failing).",
                )
                # A label makes CloudFormation render an alarm as a metric query, so only the graph gets one.
                widgets["age"].append(age.with_(label=f"{label}: oldest"))
                widgets["depth"] += [
                    queue.metric_approximate_number_of_messages_visible(
                        period=_PERIOD, statistic="Maximum", label=f"{label}: waiting"
                    ),
                    queue.metric_approximate_number_of_messages_not_visible(
                        period=_PERIOD, statistic="Maximum", label=f"{label}: in flight"
                    ),
                ]
            dlq_depth = rq.dlq.metric_approximate_number_of_messages_visible(period=_PERIOD, statistic="Maximum")
            # The dead-letter consumer takes each dead letter off the DLQ within seconds (it fails and announces the
            # task, and keeps the message for `sdq redrive`), so the depth rarely shows one: count receives instead.
            dead_letters = rq.dlq.metric_number_of_messages_received(period=_PERIOD, statistic="Sum")
            self._alarm(
                f"DeadLetters-{name}",
                dead_letters,
                1,
                f"Runtime {name}: tasks exhausted their deliveries and reached the dead-letter queue "
                "(failed and announced by the dead-letter consumer; retry them with `sdq redrive`).",
            )
            self.dashboard.add_widgets(
                cw.GraphWidget(title=f"{name}: queues", left=widgets["depth"], right=widgets["age"], width=12),
                cw.GraphWidget(title=f"{name}: dead letters", left=[dead_letters, dlq_depth], width=12),
            )

    def _deliveries(self, observed: ObservedResources) -> None:
        widgets = []
        for label, topic in observed.topics.items():
            failed = topic.metric_number_of_notifications_failed(period=_PERIOD, statistic="Sum")
            self._alarm(
                f"FailedNotifications-{label}",
                failed,
                1,
                f"SNS could not deliver messages of the {label} topic to a subscriber.",
            )
            widgets.append(failed)
        self.dashboard.add_widgets(cw.GraphWidget(title="Failed SNS deliveries", left=widgets, width=12))

    def _agent_errors(self, observed: ObservedResources) -> None:
        # Container Insights (Fluent Bit) writes pod logs here; the agent logs one JSON object per line.
        metric_filter = observed.application_log_group.add_metric_filter(
            "AgentErrors",
            filter_pattern=logs.FilterPattern.all(
                logs.FilterPattern.string_value("$.kubernetes.container_name", "=", "queue-agent"),
                logs.FilterPattern.string_value("$.log_processed.level", "=", "ERROR"),
            ),
            metric_namespace=METRIC_NAMESPACE,
            metric_name=AGENT_ERRORS_METRIC,
            metric_value="1",
            default_value=0,
        )
        errors = metric_filter.metric(period=_PERIOD, statistic="Sum")
        self._alarm(
            "AgentErrors",
            errors,
            5,
            "Queue agents logged errors (failed tasks, runtime or AWS failures) in the last five minutes.",
        )
        self.dashboard.add_widgets(cw.GraphWidget(title="Queue agent errors", left=[errors], width=12))

    def _api(self, observed: ObservedResources) -> None:
        errors = []
        for name, function in observed.functions.items():
            metric = function.metric_errors(period=_PERIOD, statistic="Sum")
            self._alarm(f"LambdaErrors-{name}", metric, 1, f"The {name} function raised unhandled errors.")
            errors.append(metric)
        server_errors = observed.api.metric_server_error(period=_PERIOD, statistic="Sum")
        self._alarm("Api5xx", server_errors, 5, "The task API answered 5xx responses.")
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Task API Lambda errors", left=errors, width=12),
            cw.GraphWidget(
                title="Task API responses",
                left=[
                    observed.api.metric_count(period=_PERIOD, statistic="Sum"),
                    observed.api.metric_client_error(period=_PERIOD, statistic="Sum"),
                    server_errors,
                ],
                width=12,
            ),
        )
