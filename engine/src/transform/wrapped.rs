//! A DataFusion function with something done around each call — a faster path, a check
//! — and everything else (name, aliases, signature, types, documentation) its own, so
//! that it plans and reads exactly as the function it wraps.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// What is done around each call of the wrapped function: `inner` is the function.
pub trait Around: Debug + PartialEq + Eq + Hash + Send + Sync + 'static {
    fn invoke(&self, inner: &ScalarUDF, args: ScalarFunctionArgs) -> Result<ColumnarValue>;
}

/// `inner` with `around` done around each call.
pub fn wrap(inner: Arc<ScalarUDF>, around: impl Around) -> ScalarUDF {
    ScalarUDF::new_from_impl(Wrapped { inner, around })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Wrapped<A> {
    inner: Arc<ScalarUDF>,
    around: A,
}

impl<A: Around> ScalarUDFImpl for Wrapped<A> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.around.invoke(&self.inner, args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
