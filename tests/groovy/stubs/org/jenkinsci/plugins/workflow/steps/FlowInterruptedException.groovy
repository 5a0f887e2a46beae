package org.jenkinsci.plugins.workflow.steps

/**
 * Stand-in for workflow-step-api's FlowInterruptedException: what TimeoutStepExecution's body
 * cancellation (`new FlowInterruptedException(Result.ABORTED, new ExceededTimeout())`) and
 * MilestoneStepExecution.cancel (`Result.NOT_BUILT, new CancelledCause(...)`) throw. Like the
 * real one it is an InterruptedException, and retry never retries it (RetryStepExecution).
 */
class FlowInterruptedException extends InterruptedException {
    final String result
    final List<String> causes

    FlowInterruptedException(String result, List<String> causes) {
        super("${result}: ${causes.join(', ')}".toString())
        this.result = result
        this.causes = causes
    }
}
