/**
 * Base class of the scripts the harness loads (vars/*.groovy, Jenkinsfiles), standing in for
 * workflow-cps' CpsScript on one point: a call of a step that no plugin provides fails with
 * `java.lang.NoSuchMethodError: No such DSL method 'NAME' found among steps [...]` (CpsScript
 * .invokeMethod, via DSL.invokeMethod), not Groovy's MissingMethodException. The library uses
 * that to run without optional plugins (Lockable Resources' `lock`).
 */
abstract class CpsScriptStandIn extends Script {
    @Override
    Object invokeMethod(String name, Object args) {
        try {
            return super.invokeMethod(name, args)
        } catch (MissingMethodException e) {
            if (e.method == name && !binding.hasVariable(name) && !this.metaClass.respondsTo(this, name)) {
                throw new NoSuchMethodError("No such DSL method '${name}' found among steps " +
                    "${binding.variables.keySet().findAll { binding.getVariable(it) instanceof Closure }.sort()}")
            }
            throw e
        }
    }
}
