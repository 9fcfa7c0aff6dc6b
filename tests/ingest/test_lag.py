from confluent_kafka import KafkaError, KafkaException

from meterstream.ingest.lag import coordinator_not_ready


def test_coordinator_start_up_errors_are_waited_out() -> None:
    for code in (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                 KafkaError.COORDINATOR_NOT_AVAILABLE):  # fmt: skip
        assert coordinator_not_ready(KafkaException(KafkaError(code)))


def test_other_errors_are_not() -> None:
    assert not coordinator_not_ready(KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)))
    assert not coordinator_not_ready(KafkaException("no error object"))


def test_a_moving_leader_is_waited_out_not_raised() -> None:
    # a restarted broker answers the end offsets with NOT_LEADER_FOR_PARTITION for a moment (the chaos run's
    # restart-broker fault while its driver waits for the drain): "cannot tell yet", as the coordinator's start-up
    from meterstream.ingest.lag import LagProbe
    from meterstream.schemas.settings import Settings

    probe = LagProbe(Settings(kafka_bootstrap="127.0.0.1:9"))  # nothing listens there: never reached below

    def moving(topic: str) -> dict[int, int]:
        raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))

    probe.end_offsets = moving  # type: ignore[method-assign]
    try:
        assert probe.group_lag("g", ["usage-events"]) is None
    finally:
        probe.close()
