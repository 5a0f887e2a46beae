package org.jenkinsci.plugins.workflow.libs

import java.lang.annotation.ElementType
import java.lang.annotation.Retention
import java.lang.annotation.RetentionPolicy
import java.lang.annotation.Target

/** Stand-in for `@Library('name@version') _`: the harness has already loaded the library. */
@Retention(RetentionPolicy.SOURCE)
@Target([ElementType.TYPE, ElementType.LOCAL_VARIABLE, ElementType.FIELD, ElementType.METHOD,
    ElementType.PACKAGE, ElementType.CONSTRUCTOR, ElementType.PARAMETER])
@interface Library {
    String[] value()
    boolean changelog() default true
}
